"""Post-deploy validation checks (health, E2E, DAST, perf smoke, Sentry, Prometheus) and the base of every check."""
