"""The appliance under a real systemd (nspawn); see docs/appliance-tests.md."""
