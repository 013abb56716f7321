"""GitHub fake, write side: deployments, deployment statuses and commit statuses, with token scopes enforced.

From GitHub's REST reference (docs.github.com/en/rest, API version 2022-11-28):
- Create a deployment, `POST /repos/{o}/{r}/deployments` (/deployments/deployments#create-a-deployment): `ref`
  required (branch, tag or SHA; unknown: 422); `environment` default "production"; `auto_merge` default true (a ref
  behind the default branch is merged instead: 202 "Auto-merged main into <ref> on deployment."); `required_contexts`
  omitted = every unique commit-status context must be success, [] = no check (else 409 "Conflict: Commit status
  checks failed for <ref>."); `payload` object or JSON string; `transient_environment` default false,
  `production_environment` default true for "production"; 201 with the deployment. Classic tokens need the `repo`
  or `repo_deployment` scope; fine-grained tokens "Deployments" repository permission (write).
- Create a deployment status, `POST /repos/{o}/{r}/deployments/{id}/statuses` (/deployments/statuses): `state` one of
  error, failure, inactive, in_progress, queued, pending, success (else 422); `description` at most 140 characters;
  `log_url` (sets `target_url` too), `environment_url`, `auto_inactive` default true: a `success` status adds an
  `inactive` status to earlier non-transient, non-production deployments of the same environment whose state was
  success. Same scopes as deployments. List: `GET .../deployments` (filters sha, ref, task, environment; newest
  first) and `GET .../deployments/{id}/statuses` (newest first).
- Create a commit status, `POST /repos/{o}/{r}/statuses/{sha}` (/commits/statuses): `state` error, failure, pending,
  success (else 422); `context` default "default"; unknown SHA 422. Classic scope `repo` or `repo:status`;
  fine-grained "Commit statuses" (write).
- A token without the scope: 403 "Resource not accessible by personal access token", with `X-OAuth-Scopes` (what the
  token has) and `X-Accepted-OAuth-Scopes` (what would do).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.fakes.base import Request, Response
from tests.fakes.github_state import COMMIT_STATES, DEPLOYMENT_STATES, Repo, latest_state, next_id, stamp, user

if TYPE_CHECKING:
    from tests.fakes.github import GitHubFake

DEPLOYMENT_SCOPES = ("repo", "repo_deployment")
STATUS_SCOPES = ("repo", "repo:status")


def _scoped(fake: GitHubFake, accepted: tuple[str, ...]) -> Response | None:
    if fake.scopes is None or set(accepted) & fake.scopes:
        return None
    return Response(403, fake.error_body(403, "Resource not accessible by personal access token"), headers={
        "X-OAuth-Scopes": ", ".join(sorted(fake.scopes)), "X-Accepted-OAuth-Scopes": ", ".join(accepted)})


def _invalid(fake: GitHubFake, field: str, code: str = "invalid") -> Response:
    body = fake.error_body(422, "Validation Failed")
    body["errors"] = [{"resource": "DeploymentStatus" if field == "state" else "Deployment", "field": field,
                       "code": code}]
    return Response(422, body)


def _resolve(repo: Repo, ref: str) -> str | None:
    if ref in repo.commits:
        return ref
    for kind in ("heads", "tags"):
        obj = repo.refs.get(f"{kind}/{ref}")
        if obj is not None:
            return str(obj["sha"]) if obj["type"] == "commit" else str(repo.tag_objects[obj["sha"]]["object"]["sha"])
    return None


def create_deployment(fake: GitHubFake, req: Request) -> Response:
    denied = _scoped(fake, DEPLOYMENT_SCOPES)
    repo = fake._repo_of(req)
    if repo is None:
        return fake._not_found()
    if denied:
        return denied
    body = req.json() or {}
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        return _invalid(fake, "ref", "missing_field")
    sha = _resolve(repo, ref)
    if sha is None:
        return Response(422, fake.error_body(422, f"No ref found for: {ref}"))
    main = repo.refs.get("heads/main")
    if body.get("auto_merge", True) and main is not None and main["sha"] != sha:
        return Response(202, {"message": f"Auto-merged main into {ref} on deployment."})
    contexts = body.get("required_contexts")
    latest: dict[str, str] = {}
    for st in repo.statuses:  # oldest first: the last one of a context wins
        if st["sha"] == sha:
            latest[st["context"]] = st["state"]
    wanted = list(latest) if contexts is None else list(contexts)
    if any(latest.get(c) != "success" for c in wanted):
        return Response(409, fake.error_body(409, f"Conflict: Commit status checks failed for {ref}."))
    payload = body.get("payload", {})
    if isinstance(payload, str):
        payload = json.loads(payload) if payload else {}
    env = body.get("environment") or "production"
    n = next_id()
    dep = {"url": f"{repo.api}/deployments/{n}", "id": n, "node_id": f"DE_{n}", "sha": sha, "ref": ref,
           "task": body.get("task") or "deploy", "payload": payload, "original_environment": env,
           "environment": env, "description": body.get("description") or "", "creator": user("aevon-bot"),
           "created_at": stamp(n), "updated_at": stamp(n), "statuses_url": f"{repo.api}/deployments/{n}/statuses",
           "repository_url": repo.api, "transient_environment": bool(body.get("transient_environment", False)),
           "production_environment": bool(body.get("production_environment", env == "production"))}
    repo.deployments.append(dep)
    repo.deployment_statuses[n] = []
    return Response(201, dep)


def _status(repo: Repo, dep: dict[str, Any], state: str, body: dict[str, Any]) -> dict[str, Any]:
    n = next_id()
    log = body.get("log_url") or body.get("target_url") or ""
    return {"url": f"{dep['url']}/statuses/{n}", "id": n, "node_id": f"DES_{n}", "state": state,
            "creator": user("aevon-bot"), "description": body.get("description") or "",
            "environment": body.get("environment") or dep["environment"], "target_url": log, "log_url": log,
            "environment_url": body.get("environment_url") or "", "created_at": stamp(n), "updated_at": stamp(n),
            "deployment_url": dep["url"], "repository_url": repo.api}


def create_deployment_status(fake: GitHubFake, req: Request) -> Response:
    denied = _scoped(fake, DEPLOYMENT_SCOPES)
    repo = fake._repo_of(req)
    dep_id = int(req.params["id"])
    dep = next((d for d in repo.deployments if d["id"] == dep_id), None) if repo else None
    if repo is None or dep is None:
        return fake._not_found()
    if denied:
        return denied
    body = req.json() or {}
    state = body.get("state")
    if state not in DEPLOYMENT_STATES:
        return _invalid(fake, "state")
    if len(body.get("description") or "") > 140:
        return _invalid(fake, "description", "custom")
    if body.get("environment"):
        dep["environment"] = body["environment"]
    status = _status(repo, dep, state, body)
    repo.deployment_statuses[dep_id].append(status)
    if state == "success" and body.get("auto_inactive", True):
        for other in repo.deployments:
            if (other["id"] != dep_id and other["environment"] == dep["environment"]
                    and not other["transient_environment"] and not other["production_environment"]
                    and latest_state(repo, other["id"]) == "success"):
                repo.deployment_statuses[other["id"]].append(_status(repo, other, "inactive", {}))
    return Response(201, status)


def list_deployments(fake: GitHubFake, req: Request) -> Response:
    repo = fake._repo_of(req)
    if repo is None:
        return fake._not_found()
    deps = [d for d in reversed(repo.deployments)
            if all(req.q(k) in (None, d[k]) for k in ("sha", "ref", "task", "environment"))]
    return fake._page(req, deps)


def list_deployment_statuses(fake: GitHubFake, req: Request) -> Response:
    repo = fake._repo_of(req)
    dep_id = int(req.params["id"])
    if repo is None or dep_id not in repo.deployment_statuses:
        return fake._not_found()
    return fake._page(req, list(reversed(repo.deployment_statuses[dep_id])))


def create_commit_status(fake: GitHubFake, req: Request) -> Response:
    denied = _scoped(fake, STATUS_SCOPES)
    repo = fake._repo_of(req)
    if repo is None:
        return fake._not_found()
    if denied:
        return denied
    sha = req.params["sha"]
    if sha not in repo.commits:
        return Response(422, fake.error_body(422, f"No commit found for SHA: {sha}"))
    body = req.json() or {}
    if body.get("state") not in COMMIT_STATES:
        return _invalid(fake, "state")
    n = repo.status(sha, body.get("context") or "default", body["state"], body.get("target_url"))
    st = next(s for s in repo.statuses if s["id"] == n)
    st["description"] = body.get("description") or ""
    st["creator"] = user("aevon-bot")
    return Response(201, st)


def register(fake: GitHubFake) -> None:
    """Add the write routes to `fake`."""
    fake.route("POST", r"/deployments", lambda r: create_deployment(fake, r))
    fake.route("GET", r"/deployments", lambda r: list_deployments(fake, r))
    fake.route("POST", r"/deployments/(?P<id>\d+)/statuses", lambda r: create_deployment_status(fake, r))
    fake.route("GET", r"/deployments/(?P<id>\d+)/statuses", lambda r: list_deployment_statuses(fake, r))
    fake.route("POST", r"/statuses/(?P<sha>[0-9a-f]{40})", lambda r: create_commit_status(fake, r))
