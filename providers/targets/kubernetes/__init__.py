"""Kubernetes and GKE targets: SHA-tagged images, rolling updates and undo with kubectl's semantics."""
