"""Our own state in PostgreSQL and on disk: release ledger, undo journal, backup catalog, check baselines."""
