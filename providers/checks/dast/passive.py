"""Passive DAST checks of our own: security headers and cookie flags of the deployed pages, as DastFindings."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, Field

from providers.checks.dast.scan import DastFinding
from providers.models import Severity

# Categories and keys reuse wapiti's names where wapiti reports the same thing (http_headers, cookieflags, csp), so
# that one issue seen by both has one fingerprint; ours also know CSP frame-ancestors, Referrer-Policy and SameSite.
HSTS_MIN_AGE_S = 180 * 86400


class PassiveSettings(BaseModel):
    """Which pages to fetch (GET, redirects followed) and judge."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    paths: list[str] = Field(default_factory=lambda: ["/"])
    timeout_s: float = Field(default=10, gt=0)


def _csp(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(";"):
        name, _, rest = part.strip().partition(" ")
        if name:
            out.setdefault(name.lower(), rest.strip())
    return out


def judge_headers(path: str, headers: httpx.Headers, https: bool) -> list[DastFinding]:
    """Missing or weak CSP, X-Content-Type-Options, clickjacking protection, Referrer-Policy, HSTS (https)."""
    found: list[DastFinding] = []

    def add(category: str, severity: Severity, key: str, header: str, info: str = "") -> None:
        found.append(DastFinding(category, severity, "GET", path, key, "passive", info or key, parameter=header))

    csp = headers.get("content-security-policy")
    if csp is None:
        add("Content Security Policy Configuration", Severity.MEDIUM, "CSP is not set", "Content-Security-Policy")
    if headers.get("x-content-type-options", "").strip().lower() != "nosniff":
        add("MIME Type Confusion", Severity.LOW, "X-Content-Type-Options is not set", "X-Content-Type-Options")
    xfo = headers.get("x-frame-options", "").strip().upper()
    if xfo not in ("DENY", "SAMEORIGIN") and "frame-ancestors" not in _csp(csp or ""):
        add("Clickjacking Protection", Severity.MEDIUM, "X-Frame-Options is not set", "X-Frame-Options",
            "neither X-Frame-Options (DENY/SAMEORIGIN) nor CSP frame-ancestors")
    referrer = headers.get("referrer-policy")
    if referrer is None:
        add("Referrer Policy", Severity.LOW, "Referrer-Policy is not set", "Referrer-Policy")
    elif referrer.strip().lower() == "unsafe-url":
        add("Referrer Policy", Severity.LOW, "Referrer-Policy is unsafe-url", "Referrer-Policy")
    if https:
        hsts = headers.get("strict-transport-security")
        if hsts is None:
            add("HTTP Strict Transport Security (HSTS)", Severity.MEDIUM, "Strict-Transport-Security is not set",
                "Strict-Transport-Security")
        else:
            age = _csp(hsts.replace("=", " ")).get("max-age", "0")
            if not age.isdigit() or int(age) < HSTS_MIN_AGE_S:
                add("HTTP Strict Transport Security (HSTS)", Severity.LOW, "Strict-Transport-Security max-age is short",
                    "Strict-Transport-Security", f"max-age={age}, less than {HSTS_MIN_AGE_S}")
    return found


def parse_set_cookie(value: str) -> tuple[str, dict[str, str]]:
    """(cookie name, attributes by lower-case name) of one Set-Cookie header."""
    first, *attrs = value.split(";")
    name = first.split("=", 1)[0].strip()
    parsed: dict[str, str] = {}
    for attr in attrs:
        key, _, val = attr.strip().partition("=")
        if key:
            parsed[key.strip().lower()] = val.strip()
    return name, parsed


def judge_cookies(path: str, set_cookies: list[str], https: bool) -> list[DastFinding]:
    """HttpOnly, Secure (https) and SameSite of each cookie set (SameSite=None needs Secure)."""
    found: list[DastFinding] = []
    for raw in set_cookies:
        name, attrs = parse_set_cookie(raw)
        problems: list[tuple[str, Severity, str]] = []
        if "httponly" not in attrs:
            problems.append(("HttpOnly Flag cookie", Severity.LOW, "HttpOnly flag is not set in the cookie : {0}"))
        if https and "secure" not in attrs:
            problems.append(("Secure Flag cookie", Severity.MEDIUM, "Secure flag is not set in the cookie : {0}"))
        same_site = attrs.get("samesite", "").lower()
        if not same_site:
            problems.append(("SameSite Flag cookie", Severity.LOW, "SameSite is not set in the cookie : {0}"))
        elif same_site == "none" and "secure" not in attrs:
            problems.append(("SameSite Flag cookie", Severity.LOW, "SameSite=None without Secure in the cookie : {0}"))
        for category, severity, key in problems:
            text = key.format(name)
            found.append(DastFinding(category, severity, "GET", path, text, "passive", text, parameter=name))
    return found


async def passive_scan(base_url: str, settings: PassiveSettings,
                       client: httpx.AsyncClient | None = None) -> tuple[list[DastFinding], list[str]]:
    """GET each path; (findings, errors of pages that could not be fetched)."""
    findings: list[DastFinding] = []
    errors: list[str] = []
    own = client is None
    http = client or httpx.AsyncClient(timeout=settings.timeout_s, follow_redirects=True)
    try:
        for path in settings.paths:
            try:
                resp = await http.get(base_url.rstrip("/") + "/" + path.lstrip("/"))
            except httpx.HTTPError as exc:
                errors.append(f"GET {path}: {type(exc).__name__}")
                continue
            https = resp.url.scheme == "https"
            findings += judge_headers(path, resp.headers, https)
            cookies = [c for r in [*resp.history, resp] for c in r.headers.get_list("set-cookie")]
            findings += judge_cookies(path, cookies, https)
    finally:
        if own:
            await http.aclose()
    return findings, errors
