"""The perf check's verdict: absolute thresholds per endpoint and the regression rule against the last good."""

from __future__ import annotations

from typing import Any

from providers.checks.perf.check import PerfSettings, is_loopback_url, judge


def settings(**kw: Any) -> PerfSettings:
    return PerfSettings.model_validate({"endpoints": [{"path": "/status"}, {"path": "/health", "p95_ms": 50}], **kw})


def fig(p95: float, *, p50: float = 1.0, p99: float | None = None, err: float = 0.0, rps: float = 50.0,
        n: int = 100) -> dict[str, float]:
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99 if p99 is not None else p95, "max_ms": p95,
            "error_rate": err, "rps": rps, "requests": float(n)}


def baseline(status_p95: float) -> dict[str, Any]:
    return {"release_id": "dev-v2", "endpoints": {"GET /status": {"p95_ms": status_p95}}}


def test_within_limits_and_no_baseline_passes() -> None:
    assert judge(settings(), {"GET /status": fig(200), "GET /health": fig(40)}, None) == []


def test_absolute_limits_per_endpoint() -> None:
    found = judge(settings(), {"GET /status": fig(1200), "GET /health": fig(60)}, None)
    assert [(f.location, f.detail["limit"]) for f in found] == [("GET /status", 1000.0), ("GET /health", 50.0)]
    rps = judge(settings(thresholds={"min_rps": 10, "p95_ms": None}), {"GET /status": fig(5, rps=3)}, None)
    assert [f.detail for f in rps] == [{"rps": 3}]


def test_error_rate_is_critical() -> None:
    [f] = judge(settings(), {"GET /status": fig(5, err=0.02)}, None)
    assert f.severity == "CRITICAL" and "2.0% of 100 requests failed" in f.message


def test_regression_needs_both_factor_and_delta() -> None:
    s = settings(regression={"factor": 1.5, "min_delta_ms": 50})
    # 3x but only +20 ms: noise on a fast endpoint
    assert judge(s, {"GET /status": fig(30)}, baseline(10)) == []
    # +60 ms but only 1.3x
    assert judge(s, {"GET /status": fig(260)}, baseline(200)) == []
    [f] = judge(s, {"GET /status": fig(340)}, baseline(40))
    assert f.location == "GET /status" and f.detail["baseline"] == 40 and f.detail["baseline_release"] == "dev-v2"
    assert "8.5x the last good release's 40 ms (limit 1.5x)" in f.message
    assert judge(settings(regression={"enabled": False}), {"GET /status": fig(340)}, baseline(40)) == []


def test_regression_metric_is_configurable() -> None:
    s = settings(regression={"metric": "p50_ms", "factor": 2, "min_delta_ms": 0})
    base = {"endpoints": {"GET /status": {"p50_ms": 10, "p95_ms": 1}}}
    [f] = judge(s, {"GET /status": fig(5, p50=25)}, base)
    assert f.detail["metric"] == "p50_ms"


def test_loopback_only() -> None:
    for ok in ("http://127.0.0.1:8101", "http://127.8.0.1/x", "http://localhost:1", "http://[::1]:80/"):
        assert is_loopback_url(ok), ok
    for bad in ("http://10.0.0.1", "https://api.aevon.dev", "http://192.168.1.2:80", "ftp://127.0.0.1", "x"):
        assert not is_loopback_url(bad), bad

