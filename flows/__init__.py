"""Prefect flows: deploy (the DAG), rollback (subflow), and the CLI that starts them."""
