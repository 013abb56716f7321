-- Renaming Task.title to Task.name the safe way, step 1 (expand): the new column, filled from the old one.
-- The previous release keeps running on this schema (it never reads "name"); this release writes both columns.
-- AlterTable
ALTER TABLE "Task" ADD COLUMN "name" TEXT;

-- Backfill
UPDATE "Task" SET "name" = "title" WHERE "name" IS NULL;
