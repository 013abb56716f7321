"""Deploy-flow hooks that record each run on GitHub (spec `records.github`): one call per phase, never failing."""

from __future__ import annotations

from typing import Any

import httpx

from flows.notify import flow_run_url
from flows.report import DeployOutcome, DeployReport
from flows.runtime import Runtime
from providers.clients.github import GitHubSettings, github_session, repository_of
from providers.errors import AevonError
from providers.records.github import GitHubRecord


def _record(rt: Runtime, http: httpx.AsyncClient | None = None) -> GitHubRecord | None:
    spec = rt.spec.records.github
    if spec is None:
        return None
    return GitHubRecord(spec=spec, env=rt.spec.environment, source_repo=rt.spec.source.repo,
                        token=rt.secrets.get(spec.token_secret), http=http)


def _note(report: DeployReport, phase: str, rec: GitHubRecord) -> None:
    with report.step(f"GitHub record: {phase}") as st:
        st.outcome = "failed" if rec.notes else "ok"
        st.detail = "; ".join(rec.notes)[:500] if rec.notes else (
            f"deployment {rec.deployment_id}" if rec.deployment_id else "commit status only")


async def github_started(rt: Runtime, report: DeployReport, http: httpx.AsyncClient | None = None) -> None:
    """After the release is resolved: the GitHub deployment (in_progress) and a pending commit status."""
    rec = _record(rt, http)
    if rec is None or not report.sha or not report.release_id:
        return
    await rec.started(report.sha, report.ref, report.release_id, flow_run_url(report.flow_run_id))
    _note(report, "started", rec)


async def _find_deployment(rec: GitHubRecord, sha: str, release_id: str) -> int | None:
    """The deployment `github_started` made for this release (stateless: read back from GitHub)."""
    settings = GitHubSettings(api_url=rec.spec.api_url, repository=rec.spec.repository, attempts=2, max_pages=2)
    try:
        repo = repository_of(settings, rec.source_repo, "records.github.repository")
        async with github_session(settings, repository=repo, token=rec.token, http=rec.http) as gh:
            found: list[Any] = await gh.paginate(gh.repo_path("/deployments"), resource="list deployments",
                                                 params={"sha": sha, "environment": rec.environment})
    except (AevonError, httpx.HTTPError) as exc:
        rec.notes.append(f"GitHub list deployments: {exc}")
        return None
    for dep in found:
        payload = dep.get("payload")
        if isinstance(payload, dict) and payload.get("release_id") == release_id:
            return int(dep["id"])
    return None


async def github_finished(rt: Runtime, report: DeployReport, http: httpx.AsyncClient | None = None) -> None:
    """At the end of the run: success, failure, or inactive for a rolled-back run; the commit status to match.

    A run refused before its deployment was created leaves GitHub untouched.
    """
    rec = _record(rt, http)
    if rec is None or not report.sha or not report.release_id:
        return
    rec.deployment_id = await _find_deployment(rec, report.sha, report.release_id)
    if rec.deployment_id is None and report.outcome == DeployOutcome.REFUSED:
        return
    await rec.finished(report.outcome.name, report.sha, report.error, flow_run_url(report.flow_run_id))
    _note(report, "finished", rec)
