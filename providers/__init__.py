"""Clients of the outside world behind small protocols: targets, migrators, checks, ledgers."""
