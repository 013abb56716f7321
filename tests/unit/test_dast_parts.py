"""DAST parts without a network: wapiti's report, fingerprints and merging, the baseline diff, passive checks."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from providers.checks.dast.check import diff
from providers.checks.dast.passive import PassiveSettings, judge_cookies, judge_headers, passive_scan
from providers.checks.dast.scan import DastFinding, WapitiSettings, argv, merge, parse_report
from providers.models import Severity

GOOD_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'", "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
REPORT = {
    "vulnerabilities": {
        "Reflected Cross Site Scripting": [{"method": "GET", "path": "/search?q=x", "level": 2, "parameter": "q",
                                            "info": "XSS via q.\nWarning: CSP", "module": "xss",
                                            "wstg": ["WSTG-INPV-01"]}],
        "SQL Injection": [{"method": "POST", "path": "/login", "level": 4, "parameter": "email", "module": "sql"}],
        "Clickjacking Protection": [{"method": "GET", "path": "/", "level": 1, "parameter": "",
                                     "info": "X-Frame-Options is not set", "module": "http_headers"}],
        "Path Traversal": [],
    },
    "anomalies": {"Internal Server Error": [{"method": "GET", "path": "/api/x", "level": 3, "parameter": "id"}]},
}


def test_wapiti_report_is_normalised() -> None:
    found = {f.category: f for f in parse_report(REPORT)}
    assert sorted(found) == ["Clickjacking Protection", "Internal Server Error", "Reflected Cross Site Scripting",
                             "SQL Injection"]
    xss = found["Reflected Cross Site Scripting"]
    assert (xss.severity, xss.method, xss.path, xss.key, xss.source) == (Severity.MEDIUM, "GET", "/search", "q",
                                                                          "wapiti:xss")
    assert xss.info == "XSS via q." and xss.wstg == ("WSTG-INPV-01",) and xss.parameter == "q"
    assert found["SQL Injection"].severity == Severity.CRITICAL
    assert found["Clickjacking Protection"].key == "X-Frame-Options is not set"  # no parameter: the info tells apart
    assert found["Internal Server Error"].source == "wapiti:anomalies"


def test_same_issue_from_both_scanners_is_one_finding_at_the_worst_severity() -> None:
    wapiti = [f for f in parse_report(REPORT) if f.category == "Clickjacking Protection"]
    passive = judge_headers("/", httpx.Headers({**GOOD_HEADERS, "content-security-policy": "default-src 'self'"}),
                            https=False)
    assert [p.fingerprint for p in passive] == [wapiti[0].fingerprint]
    [merged] = merge([*wapiti, *passive])
    assert merged.severity == Severity.MEDIUM and merged.source == "passive"


def test_diff_against_the_baseline() -> None:
    a = DastFinding("Cat A", Severity.HIGH, "GET", "/a", "p", "wapiti:xss")
    b = DastFinding("Cat B", Severity.LOW, "GET", "/b", "", "passive")
    gone = DastFinding("Cat C", Severity.MEDIUM, "GET", "/c", "", "passive")
    assert [f.label() for f in diff([a, b], None).new] == ["Cat A: GET /a (p)", "Cat B: GET /b"]
    baseline = {"release_id": "dev-1", "findings": {f.fingerprint: f.as_dict() for f in (b, gone)}}
    d = diff([a, b], baseline)
    assert (d.new, d.unchanged, d.baseline_release) == ([a], [b], "dev-1")
    assert [r["category"] for r in d.fixed] == ["Cat C"]


@pytest.mark.parametrize(("headers", "https", "want"), [
    (GOOD_HEADERS, False, []),
    ({}, False, ["CSP is not set", "X-Content-Type-Options is not set", "X-Frame-Options is not set",
                 "Referrer-Policy is not set"]),
    ({**GOOD_HEADERS, "content-security-policy": "default-src 'self'", "x-frame-options": "SAMEORIGIN"}, False, []),
    ({**GOOD_HEADERS, "referrer-policy": "unsafe-url"}, False, ["Referrer-Policy is unsafe-url"]),
    (GOOD_HEADERS, True, ["Strict-Transport-Security is not set"]),
    ({**GOOD_HEADERS, "strict-transport-security": "max-age=600"}, True,
     ["Strict-Transport-Security max-age is short"]),
    ({**GOOD_HEADERS, "strict-transport-security": "max-age=31536000; includeSubDomains"}, True, []),
])
def test_security_headers(headers: dict[str, str], https: bool, want: list[str]) -> None:
    assert [f.key for f in judge_headers("/", httpx.Headers(headers), https)] == want


def test_cookie_flags() -> None:
    cookies = ["sid=1; Path=/; HttpOnly; Secure; SameSite=Lax", "pref=dark; Path=/", "x=1; HttpOnly; SameSite=None"]
    plain = [f.key for f in judge_cookies("/", cookies, https=False)]
    assert plain == ["HttpOnly flag is not set in the cookie : pref", "SameSite is not set in the cookie : pref",
                     "SameSite=None without Secure in the cookie : x"]
    assert {f.parameter for f in judge_cookies("/", cookies, https=False)} == {"pref", "x"}
    secure = {f.key: f.severity for f in judge_cookies("/", cookies, https=True)}
    assert secure["Secure flag is not set in the cookie : pref"] == Severity.MEDIUM
    assert "Secure flag is not set in the cookie : sid" not in secure


async def test_passive_scan_follows_redirects_and_reports_unreachable_pages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(302, headers={"location": "/login", "set-cookie": "tracking=1"})
        if request.url.path == "/login":
            return httpx.Response(200, headers=GOOD_HEADERS)
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=True) as client:
        found, errors = await passive_scan("http://app", PassiveSettings(paths=["/", "/down"]), client)
    assert [f.key for f in found] == ["HttpOnly flag is not set in the cookie : tracking",
                                      "SameSite is not set in the cookie : tracking"]
    assert errors == ["GET /down: ConnectError"]


def test_wapiti_argv_is_offline_and_loopback_only() -> None:
    cmd = argv("/venv/bin/wapiti", "http://127.0.0.1:8102/", WapitiSettings(), Path("/r.json"), Path("/w"))
    assert cmd[:3] == ["/venv/bin/wapiti", "-u", "http://127.0.0.1:8102/"]

    def value(flag: str) -> str:
        return cmd[cmd.index(flag) + 1]

    assert value("--dns-endpoint") == "localhost" and value("--endpoint") == "http://127.0.0.1:9/"
    assert "--no-bugreport" in cmd and "--flush-session" in cmd
    assert value("-m") == "xss,sql,exec,csp,http_headers,cookieflags" and value("-f") == "json"
    assert value("-o") == "/r.json" and value("--store-session") == "/w/session"
    assert value("--max-scan-time") == "60" and value("--max-attack-time") == "20" and value("--tasks") == "4"
