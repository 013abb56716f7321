"""Performance smoke: locust in a child process, percentiles against thresholds and the last good release."""
