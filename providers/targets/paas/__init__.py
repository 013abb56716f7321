"""PaaS targets over their REST/GraphQL APIs: Vercel, Render, Railway, Koyeb, on one shared base."""
