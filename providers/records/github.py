"""GitHub as the system of record: one Deployment per run and environment, its statuses in step, a commit status.

Calls (docs.github.com/en/rest, 2022-11-28): create a deployment (`POST /repos/{o}/{r}/deployments`, ref = the SHA,
auto_merge false, required_contexts as configured, payload with the release id), create deployment statuses
(`POST .../deployments/{id}/statuses`: in_progress, then success / failure / inactive for a rolled-back run, with
`log_url` = the Prefect run and `environment_url`), and the commit status `aevon-deploy/<env>`
(`POST /repos/{o}/{r}/statuses/{sha}`). Token: classic scopes `repo_deployment` + `repo:status` (or `repo`), or a
fine-grained token with "Deployments" and "Commit statuses" write. A failing call never fails the deploy: every
phase returns what went wrong as a note for the report and the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from deployments.spec import GitHubRecordSpec
from providers.clients.github import GitHubSettings, github_session, repository_of
from providers.errors import AevonError

log = logging.getLogger("aevon.records.github")

# our outcome -> (deployment status, commit status, description)
FINAL = {
    "SUCCEEDED": ("success", "success", "deployed and validated"),
    "ROLLED_BACK": ("inactive", "failure", "failed and rolled back to the previous release"),
    "ROLLBACK_FAILED": ("failure", "error", "failed; the rollback failed too: an operator must look"),
    "FAILED": ("failure", "failure", "failed"),
    "REFUSED": ("error", "error", "refused before any change"),
}


@dataclass
class GitHubRecord:
    """One run's record on GitHub: the deployment id once created, and notes of calls that failed."""

    spec: GitHubRecordSpec
    env: str
    source_repo: str
    token: SecretStr | None
    http: httpx.AsyncClient | None = None
    deployment_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def environment(self) -> str:
        return self.spec.environment or self.env

    @property
    def context(self) -> str:
        return f"aevon-deploy/{self.env}"

    async def _call(self, what: str, path: str, body: dict[str, Any]) -> Any:
        settings = GitHubSettings(api_url=self.spec.api_url, repository=self.spec.repository, attempts=2)
        try:
            repo = repository_of(settings, self.source_repo, "records.github.repository")
            async with github_session(settings, repository=repo, token=self.token, http=self.http) as gh:
                return await gh.post(gh.repo_path(path), body, resource=what)
        except (AevonError, httpx.HTTPError) as exc:  # recorded, never raised: GitHub is a record, not a gate
            note = f"GitHub {what}: {exc}"
            log.warning("%s", note)
            self.notes.append(note)
            return None

    async def started(self, sha: str, ref: str, release_id: str, log_url: str | None) -> None:
        """The run resolved its release: create the deployment (in_progress) and a pending commit status."""
        body: dict[str, Any] = {
            "ref": sha, "environment": self.environment, "auto_merge": False,
            "required_contexts": list(self.spec.required_contexts), "task": "deploy",
            "payload": {"release_id": release_id, "ref": ref, "flow_run_url": log_url},
            "description": f"aevon-deploy {ref} to {self.env}"[:140],
            "production_environment": self.spec.production if self.spec.production is not None
            else self.env == "prod",
        }
        created = await self._call("create deployment", "/deployments", body)
        if isinstance(created, dict) and "id" in created:
            self.deployment_id = int(created["id"])
            await self._status("in_progress", f"deploying {ref}", log_url)
        elif created is not None:  # 202: GitHub merged something instead of creating a deployment
            self.notes.append(f"GitHub create deployment: no deployment ({created.get('message', created)})")
        await self._commit_status(sha, "pending", f"deploying to {self.env}", log_url)

    async def _status(self, state: str, description: str, log_url: str | None) -> None:
        if self.deployment_id is None:
            return
        body: dict[str, Any] = {"state": state, "description": description[:140], "auto_inactive": True}
        if log_url:
            body["log_url"] = log_url
        if self.spec.environment_url:
            body["environment_url"] = self.spec.environment_url
        await self._call(f"deployment status {state}", f"/deployments/{self.deployment_id}/statuses", body)

    async def _commit_status(self, sha: str, state: str, description: str, log_url: str | None) -> None:
        if not self.spec.commit_status:
            return
        body: dict[str, Any] = {"state": state, "context": self.context, "description": description[:140]}
        if log_url:
            body["target_url"] = log_url
        await self._call(f"commit status {state}", f"/statuses/{sha}", body)

    async def finished(self, outcome: str, sha: str | None, error: str | None, log_url: str | None) -> None:
        """The run ended: the deployment's final status and the commit status, from our outcome."""
        state, commit_state, description = FINAL.get(outcome, FINAL["FAILED"])
        if error and outcome != "SUCCEEDED":
            description = f"{description}: {error}"
        await self._status(state, description, log_url)
        if sha:
            await self._commit_status(sha, commit_state, description, log_url)
