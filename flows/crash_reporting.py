"""The orchestrator's own crash reports: sentry-sdk from settings, every event scrubbed of secrets before it leaves."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from deployments.settings import AevonSettings

FILTERED = "[Filtered]"
# Variable names whose values count as secrets wherever they show up in an event (messages, breadcrumbs, paths).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIAL|DATABASE_URL|DB_URL$", re.I)
# Credentials inside any URL: scheme://user:password@host -> scheme://user:[Filtered]@host
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)
_MIN_SECRET_LEN = 6  # shorter values would blank out ordinary words


def _secrets_of_url(url: str) -> list[str]:
    """The URL and its password (raw and percent-decoded): what must not appear.

    The password is also taken as everything between the user's ':' and the LAST '@', with its pieces around a
    '/', '@', ':', '?' or '#': a malformed URL's parser splits it there and an error may quote any piece.
    """
    out = [url]
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        out += [password, unquote(password)]
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo:
        raw = userinfo.split(":", 1)[1]
        out += [raw, unquote(raw), *re.split(r"[/@:?#]", raw)]
    return out


def _forms(value: str) -> list[str]:
    """`value` as an exception or a log may show it: as is, stripped, repr- and JSON-escaped, percent-encoded."""
    return [value, value.strip(), repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe=""),
            quote(value, safe=":/@")]


def secret_values(settings: AevonSettings, environ: dict[str, str] | None = None) -> list[str]:
    """Values to blank in every event: the ledger URL and password, and secret-named environment variables, each
    also in the forms an error message quotes it in (a token with a trailing newline shows as `tok\\n`)."""
    env = os.environ if environ is None else environ
    values = _secrets_of_url(settings.state_db_url.get_secret_value())
    for name, value in env.items():
        if _SECRET_NAME.search(name) and value:
            values += _secrets_of_url(value) if "://" in value else [value]
    forms = [form for v in values for form in _forms(v)]
    # the DSN's own key is public by design (it is in every envelope's header): keep it readable
    return sorted({v for v in forms if len(v) >= _MIN_SECRET_LEN}, key=len, reverse=True)


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (an event, or any part of one) with every secret and URL password replaced by [Filtered]."""
    secrets = list(secrets)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, FILTERED)
        return _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{FILTERED}@", value)
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


def _release() -> str:
    try:
        return f"aevon-deploy@{version('aevon-deploy')}"
    except PackageNotFoundError:
        return "aevon-deploy@unknown"


def init_crash_reporting(settings: AevonSettings) -> bool:
    """Initialise sentry-sdk when `sentry_dsn` is set; True when crash reports are on.

    Unhandled exceptions reach Sentry through the SDK's excepthook; `report_crash` sends the ones a flow run turned
    into a failed state. No local variables and no PII are sent, and `before_send` blanks secrets everywhere.
    """
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk

    secrets = secret_values(settings)

    def before_send(event: Any, hint: Any) -> Any:
        return scrub(event, secrets)

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(), release=_release(), send_default_pii=False,
        include_local_variables=False, traces_sample_rate=0, before_send=before_send,
        before_breadcrumb=lambda crumb, hint: scrub(crumb, secrets),
    )
    return True


def report_crash(exc: BaseException | None) -> None:
    """Send `exc` (an unexpected exception a flow run ended with) when crash reports are on; flush at once."""
    if exc is None:
        return
    import sentry_sdk

    if sentry_sdk.get_client().is_active():
        sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=5)
