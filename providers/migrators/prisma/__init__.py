"""The Prisma migrator: migrate deploy/status with the offline toolkit, history table, inverse migrations."""
