-- Renaming Task.title to Task.name, step 3 (contract): no code of this release reads or writes "title". A
-- migration of its own, last: aevon-deploy applies it only after this release passed validation, so 1.3.0 (which
-- still writes "title") can take over again until then.
-- AlterTable
ALTER TABLE "Task" DROP COLUMN "title";
