"""Pre-deploy gates: review, CI status, dependency scan, image in registry, release tag, migration readiness."""
