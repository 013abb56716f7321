"""Signed production approvals: SSH signatures over the run, the decision and the plan, checked against listed keys."""
