"""What this version of the app expects of the database (probed by /health) and the task fields it serves."""

from __future__ import annotations

from aevon_app.core import TaskField

# table -> the columns this code reads or writes; /health probes each table with a zero-row SELECT.
EXPECTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "User": ("id", "email", "name", "passwordHash", "createdAt"),
    "Session": ("tokenHash", "userId", "expiresAt"),
    "Task": ("id", "title", "done", "priority", "userId", "createdAt"),
    "WorkflowRun": ("id", "name", "status", "userId", "taskId", "createdAt"),
}

# Task attributes beyond the title (columns of "Task"), in form order.
TASK_FIELDS: tuple[TaskField, ...] = (
    TaskField("priority", "Priority", ("high", "normal", "low"), "normal"),
)

# ORDER BY of the task list: most urgent first.
TASK_ORDER = """CASE "priority" WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, "createdAt" DESC, "id" DESC"""

# Migrations this code does not need: the contract phase applies them only after this release passed validation,
# so /health must not wait for them (core.expected_migrations leaves them out).
CONTRACT_MIGRATIONS: tuple[str, ...] = ("20250401000000_drop_session_created_at",)
