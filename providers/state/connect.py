"""What the ledger's parts take from the state store: a factory of pooled connections (so none imports the store)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg

Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
