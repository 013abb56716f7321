"""Database schema migrators (Prisma migrate on PostgreSQL)."""
