"""The scanner: canonicalisation, checks, scoring and providers for one link."""
