"""Thin Prefect tasks: gates, migrations, service deploys, warm-up and validation checks."""
