"""Service targets: where a service runs (local processes, Vercel, GKE, Railway, Render, Koyeb)."""
