"""Clients of outside APIs shared by targets, gates and checks: the vendor HTTP client, GitHub, OCI registries."""
