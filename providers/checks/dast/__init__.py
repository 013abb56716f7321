"""Dynamic security testing: wapiti3 scan plus passive header and cookie checks, against a baseline."""
