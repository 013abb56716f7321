"""Secret names and values checked before use: a malformed one is refused by NAME and what is wrong, never its value."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from deployments.spec import EnvironmentSpec
from providers.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable name
_URL_KEY_RE = re.compile(r"(url|dsn)$", re.IGNORECASE)


def secret_uses(spec: EnvironmentSpec) -> dict[str, list[str]]:
    """secret name -> every spec field that names it (`database.url_secret`, `services[0].secrets.token` ...)."""
    uses: dict[str, list[str]] = {}
    if spec.database is not None:
        uses.setdefault(spec.database.url_secret, []).append("database.url_secret")
    for i, svc in enumerate(spec.services):
        for key, name in svc.secrets.items():
            uses.setdefault(name, []).append(f"services[{i}].secrets.{key}")
    for section, checks in (("gates", spec.gates), ("validation.checks", spec.validation.checks)):
        for i, chk in enumerate(checks):
            for key, name in chk.secrets.items():
                uses.setdefault(name, []).append(f"{section}[{i}].secrets.{key}")
    return uses


def is_url_use(where: str) -> bool:
    """True when the field at `where` takes a URL (the database URL, a `*_url` / `*dsn` secret key)."""
    return where.endswith("database.url_secret") or bool(_URL_KEY_RE.search(where.rsplit(".", 1)[-1]))


def check_name(name: str, where: str) -> None:
    """Refuse a secret name that cannot be an environment variable (it is looked up as one)."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"secret name {name!r} must be letters, digits and '_', not starting with a digit "
            "(it is read as an environment variable)", where,
        )


def _character_problem(value: str) -> str | None:
    """What is wrong with the characters of `value` (never quoting them), or None."""
    if value != value.strip() and value.strip():
        tail = value[len(value.rstrip()):]
        head = value[: len(value) - len(value.lstrip())]
        edge = "ends" if tail else "starts"
        ws = tail or head
        kind = {"\n": "a newline (\\n)", "\r": "a carriage return (\\r)", "\t": "a tab", " ": "a space"}.get(
            ws[-1 if tail else 0], "white space"
        )
        return f"{edge} with {kind}: a copy-paste artefact? remove it"
    for ch in value:
        if ord(ch) < 32 or ord(ch) == 127:
            return f"contains a control character (U+{ord(ch):04X})"
    if not value.isascii():
        return "contains a non-ASCII character: HTTP header values and URLs take ASCII only (percent-encode it)"
    return None


def _url_problem(value: str) -> str | None:
    """What keeps `value` from being a usable URL (never quoting it), or None."""
    if " " in value:
        return "is not a URL: it contains a space (percent-encode it as %20)"
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return "is not a URL (expected scheme://[user[:password]@]host[:port]/...)"
    hint = "a character of the user or password such as '/', '?', '#', '@' or ':' must be percent-encoded"
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        return f"is not a well-formed URL: an '@' follows the host ({hint})"
    if "@" in parts.netloc.rpartition("@")[0]:
        return f"is not a well-formed URL: its user or password holds an '@' ({hint})"
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        return f"is not a well-formed URL: its port is not a number ({hint})"
    if not parts.hostname:
        return "is not a well-formed URL: it has no host"
    return None


def check_value(name: str, value: str, uses: list[str]) -> None:
    """Refuse a secret value that would break (or be quoted by) the header or URL it goes into.

    The ConfigError names the secret and the spec field using it, and what is wrong; never the value.
    """
    problem = _character_problem(value)
    if problem is None and any(is_url_use(w) for w in uses):
        problem = _url_problem(value)
    if problem is not None:
        raise ConfigError(f"secret {name} {problem}", ", ".join(uses))
