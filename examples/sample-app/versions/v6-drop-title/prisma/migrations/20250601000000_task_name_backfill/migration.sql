-- Renaming Task.title to Task.name, step 2 (expand): fill "name" of rows the release before 1.3.0 wrote while
-- 1.3.0 was being deployed (it wrote "title" only).
UPDATE "Task" SET "name" = "title" WHERE "name" IS NULL;
