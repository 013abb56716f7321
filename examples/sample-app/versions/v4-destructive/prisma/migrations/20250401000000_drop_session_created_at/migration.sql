-- Sessions expire by "expiresAt"; "createdAt" was never read.
-- AlterTable
ALTER TABLE "Session" DROP COLUMN "createdAt";
