"""Where releases come from: git refs and SHAs, and the git source that resolves and checks them out."""
