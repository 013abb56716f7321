"""Checks and gates: observers that return a typed outcome (PASSED, FAILED, ERROR) with findings."""
