"""The reporter unit: verdicts in, replies out, and the control API.

- :mod:`.policy`: the reply policy, pure functions over plain values;
- :mod:`.wording`: what replies say;
- :mod:`.ledger`: the reporter's bookkeeping in SQLite (:mod:`.schema`);
- :mod:`.service`: the trio unit around them;
- :mod:`.api`: the control API served on the unit's socket.
"""
