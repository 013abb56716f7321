"""Where runs are recorded besides the ledger: GitHub deployments and commit statuses."""
