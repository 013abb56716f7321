"""Local monitoring for dev: the alert rules and blackbox modules, and a starter for Prometheus over them."""
