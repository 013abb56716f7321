"""A stateful fake of the Vercel REST API calls the vercel target makes (deployments, projects, promote, rollback)."""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

from tests.fakes.base import Request, Response
from tests.fakes.timed import TimedFake, stage

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
         429: "rate_limited", 500: "internal_server_error", 503: "service_unavailable"}


class VercelFake(TimedFake):
    """Vercel, as its REST API reference describes it (https://vercel.com/docs/rest-api).

    - `POST /v13/deployments` (/docs/rest-api/deployments/create-a-new-deployment): `name`, `project`, `target`,
      `gitSource` {type github, repoId | org+repo, ref, sha}, `meta`, or `deploymentId` to redeploy; `teamId` query.
    - `GET /v13/deployments/{idOrUrl}`: `readyState` QUEUED -> INITIALIZING -> BUILDING -> READY (or ERROR with
      `errorCode`/`errorMessage`), `readySubstate` PROMOTED or STAGED for production deployments; every value of
      vercel/sdk docs/models/getdeploymentresponsebodyreadystate.md and ...readysubstate.md is produced:
      `end_states[sha] = "BLOCKED"` keeps a deployment BLOCKED (it never builds); a project with
      `rollingRelease` set moves a READY production deployment through ROLLING (traffic shifting, production
      still the old one) for two steps before PROMOTED; one with `autoAssignCustomDomains` false leaves it STAGED.
    - `GET /v6/deployments` (/docs/rest-api/deployments/list-deployments): `projectId`, `target` (`preview` means
      the deployments whose `target` is null), `state`, `sha`, `limit`, `until`, `rollbackCandidate`;
      `{"deployments": [...uid, state, meta, isRollbackCandidate...], "pagination": {count, next, prev}}`, newest
      first. A rollback candidate is a READY production deployment that was aliased to production
      (/docs/instant-rollback#eligible-deployments; vercel/sdk docs/models/deployments.md `isRollbackCandidate`).
    - `GET /v9/projects/{idOrName}`: `targets.production`, `lastAliasRequest`, `lastRollbackTarget`.
    - `POST /v10/projects/{projectId}/promote/{deploymentId}` and `POST /v1/projects/{projectId}/rollback/{id}`
      (the CLI's /v9 path too): an alias job pending -> succeeded after `step_s`; after a rollback, new production
      deployments stay STAGED until one is promoted (/docs/instant-rollback). A rollback to a deployment that is
      not a rollback candidate, or to the current one, is refused with 409.
    - Rolling Releases (/docs/rolling-releases; REST reference /docs/rest-api/rolling-release/*; vercel/sdk
      docs/sdks/rollingrelease/README.md and docs/models/approverollingreleasestage*.md):
      `PATCH /v1/projects/{idOrName}/rolling-release/config` {target, stages: [{targetPercentage, requireApproval,
      duration}]} (each stage larger than the one before, the last 100; it applies to the NEXT production
      deployment); that deployment becomes the canary when READY: `readySubstate` ROLLING, production still the
      current one, and `GET /v1/projects/{idOrName}/rolling-release` answers `{"rollingRelease": {state ACTIVE |
      COMPLETE | ABORTED, currentDeployment, canaryDeployment, advancementType, stages[{index, isFinalStage,
      targetPercentage, requireApproval, duration}], activeStage, nextStage, startedAt, updatedAt}}`; stages that
      require approval wait for `POST .../rolling-release/approve-stage` {nextStageIndex, canaryDeploymentId}
      (only the stage after the active one), `POST .../rolling-release/complete` {canaryDeploymentId} gives the
      canary 100 %; "at any point, you can use Instant Rollback to revert from the current release candidate":
      a rollback to the current deployment during an ACTIVE release aborts it (state ABORTED, activeStage null) and,
      being an Instant Rollback, leaves later production deployments STAGED until one is promoted
      (/docs/instant-rollback). Approving or completing a release that is not ACTIVE is refused (400).
      The config stays enabled until it is deleted: every production deployment made while it is set starts a
      rolling release (with stages requiring approval it stays ROLLING, never reaching production on its own).
      `GET .../rolling-release/config` answers `{"rollingRelease": config | null}`; `DELETE .../rolling-release/config`
      (/docs/rest-api/rolling-release/delete-rolling-release-configuration; vercel/sdk
      docs/models/deleterollingreleaseconfigresponsebody.md) disables the feature, answers `{"rollingRelease":
      null}` and, as documented, "never alters a rollout that's already in-flight". The reference documents no
      abort endpoint (vercel/sdk docs/sdks/rollingrelease/README.md lists none): the fake has none either.
      `canary_share(project)` is the share of visitors the canary serves (what the test measures).
    - Errors `{"error": {"code", "message"}}`; a refused token: 403 `{"error": {"code": "forbidden", "message":
      "Not authorized", "invalidToken": true}}`.
    """

    STEPS = ("QUEUED", "INITIALIZING", "BUILDING")

    # Vercel's how-to says both that a production deployment "triggers rolling release automatically" and to "Start
    # the rolling release" after it: False models the second reading (the deployment waits STAGED for `start`).
    rollout_starts_itself = True

    def __init__(self, token: str, step_s: float = 0.2, team_id: str | None = None) -> None:
        self.team_id = team_id
        self.projects: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        super().__init__(token, step_s)

    def routes(self) -> None:
        self.route("POST", r"/v13/deployments", self.create)
        self.route("GET", r"/v13/deployments/(?P<id>[^/]+)", self.get)
        self.route("GET", r"/v6/deployments", self.list)
        self.route("GET", r"/v9/projects/(?P<id>[^/]+)", self.get_project)
        self.route("POST", r"/v10/projects/(?P<id>[^/]+)/promote/(?P<dep>[^/]+)", self.promote)
        self.route("POST", r"/v(?:1|9)/projects/(?P<id>[^/]+)/rollback/(?P<dep>[^/]+)", self.rollback)
        self.route("PATCH", r"/v1/projects/(?P<id>[^/]+)/rolling-release/config", self.rr_config)
        self.route("GET", r"/v1/projects/(?P<id>[^/]+)/rolling-release/config", self.rr_config_get)
        self.route("DELETE", r"/v1/projects/(?P<id>[^/]+)/rolling-release/config", self.rr_config_delete)
        self.route("GET", r"/v1/projects/(?P<id>[^/]+)/rolling-release", self.rr_get)
        self.route("POST", r"/v1/projects/(?P<id>[^/]+)/rolling-release/approve-stage", self.rr_approve)
        self.route("POST", r"/v1/projects/(?P<id>[^/]+)/rolling-release/complete", self.rr_complete)
        self.route("POST", r"/v1/projects/(?P<id>[^/]+)/rolling-release/start", self.rr_start)

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": CODES.get(status, str(status)), "message": message}}

    def deny(self) -> Response:
        return Response(403, {"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": True}})

    def _err(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    # -- state -------------------------------------------------------------------------------------------------
    def add_project(self, name: str) -> dict[str, Any]:
        with self.lock:
            pid = self.new_id("prj_")
            self.projects[pid] = {"id": pid, "name": name, "accountId": self.team_id or "user_1",
                                  "targets": {"production": None}, "lastAliasRequest": None,
                                  "lastRollbackTarget": None, "autoAssignCustomDomains": True,
                                  "rollingRelease": None}
            return self.projects[pid]

    def project(self, id_or_name: str, req: Request) -> dict[str, Any] | None:
        if self.team_id is not None and req.q("teamId") != self.team_id:
            return None  # a team project is invisible outside its team scope
        return next((p for p in self.projects.values() if id_or_name in (p["id"], p["name"])), None)

    def count(self, project_name: str) -> int:
        with self.lock:
            pid = next(p["id"] for p in self.projects.values() if p["name"] == project_name)
            return sum(1 for d in self.deployments.values() if d["projectId"] == pid)

    def _to_production(self, project: dict[str, Any], dep: dict[str, Any]) -> None:
        """Point production at `dep` (it has now been aliased to production: a rollback candidate from now on)."""
        project["targets"]["production"] = dep["id"]
        dep["readySubstate"], dep["aliased"] = "PROMOTED", True

    def advance(self, now: float) -> None:
        for dep in self.deployments.values():
            if dep["readyState"] == "BLOCKED":
                continue
            project = self.projects[dep["projectId"]]
            manual = (project.get("rollout") or {}).get("advancementType") == "manual-approval"
            if dep.get("readySubstate") == "ROLLING" and not manual and now - dep["ready"] / 1000 >= 2 * self.step_s:
                self._to_production(project, dep)  # the rolling release reached 100%
            state = stage(dep["created"], now, self.step_s, self.STEPS, "READY", "ERROR", dep["fails"])
            dep["readyState"] = state
            if state == "ERROR":
                dep["errorCode"], dep["errorMessage"] = "BUILD_FAILED", 'Command "npm run build" exited with 1'
            if state == "READY" and not dep["applied"]:
                dep["applied"], dep["ready"] = True, int(now * 1000)
                if dep["target"] == "production":
                    if project["lastRollbackTarget"] is not None or not project["autoAssignCustomDomains"]:
                        dep["readySubstate"] = "STAGED"
                    elif project["rollingRelease"] and not self.rollout_starts_itself:
                        dep["readySubstate"] = "STAGED"  # waits for `POST .../rolling-release/start`
                    elif project["rollingRelease"]:
                        dep["readySubstate"] = "ROLLING"
                        self._start_rollout(project, dep, now)
                    else:
                        self._to_production(project, dep)
        for project in self.projects.values():
            job = project["lastAliasRequest"]
            if job and job["jobStatus"] == "pending" and now * 1000 - job["requestedAt"] >= self.step_s * 1000:
                job["jobStatus"] = "succeeded"
                self._to_production(project, self.deployments[job["toDeploymentId"]])
                if job["type"] == "promote":
                    project["lastRollbackTarget"] = None

    # -- views -------------------------------------------------------------------------------------------------
    FIELDS = ("url", "name", "projectId", "readyState", "readySubstate", "target", "meta", "createdAt", "ready",
              "errorCode", "errorMessage")

    def view(self, dep: dict[str, Any]) -> dict[str, Any]:
        out = {k: dep.get(k) for k in self.FIELDS if dep.get(k) is not None}
        return {"id": dep["id"], "status": dep["readyState"], "gitSource": dep["gitSource"], "type": "LAMBDAS", **out}

    @staticmethod
    def candidate(dep: dict[str, Any]) -> bool:
        return bool(dep["target"] == "production" and dep["readyState"] == "READY" and dep["aliased"])

    def list_item(self, dep: dict[str, Any]) -> dict[str, Any]:
        out = {k: dep.get(k) for k in self.FIELDS if dep.get(k) is not None}
        return {"uid": dep["id"], "state": dep["readyState"], "created": dep["createdAt"],
                "isRollbackCandidate": self.candidate(dep), **out}

    # -- handlers ----------------------------------------------------------------------------------------------
    def create(self, req: Request) -> Response:
        body = req.json() or {}
        if not body.get("name"):
            return self._err(400, "Invalid request: missing required property `name`.")
        project = self.project(str(body.get("project") or body["name"]), req)
        if project is None:
            return self._err(404, "Project not found")
        meta = dict(body.get("meta") or {})
        if body.get("deploymentId"):
            base = self.deployments.get(str(body["deploymentId"]))
            if base is None:
                return self._err(404, "Deployment not found")
            source, target, fails = dict(base["gitSource"]), body.get("target", base["target"]), base["fails"]
            meta = {**base["meta"], **meta}
        else:
            source, target = dict(body.get("gitSource") or {}), body.get("target")
            has_repo = source.get("repoId") or (source.get("org") and source.get("repo"))
            if source.get("type") != "github" or not has_repo or not source.get("ref"):
                return self._err(400, "Invalid request: `gitSource` should have type, repoId or org+repo, ref.")
            fails = source.get("sha") in self.fail_shas
            meta.update(githubCommitSha=source.get("sha"), githubCommitRef=source["ref"],
                        githubOrg=source.get("org", ""), githubRepo=source.get("repo", ""))
        if target not in (None, "production", "staging"):
            return self._err(400, "Invalid request: `target` should be one of production, staging.")
        dep_id = self.new_id("dpl_")
        now = time.time()
        blocked = self.end_states.get(str(source.get("sha"))) == "BLOCKED"
        self.deployments[dep_id] = {
            "id": dep_id, "projectId": project["id"], "name": project["name"], "target": target,
            "url": f"{project['name']}-{dep_id[4:13].lower()}.vercel.app", "gitSource": source, "meta": meta,
            "created": now, "createdAt": int(now * 1000), "fails": fails, "applied": False, "aliased": False,
            "readyState": "BLOCKED" if blocked else "QUEUED",
        }
        return Response(200, self.view(self.deployments[dep_id]))

    def get(self, req: Request) -> Response:
        dep = self.deployments.get(req.params["id"]) or next(
            (d for d in self.deployments.values() if d["url"] == req.params["id"]), None)
        if dep is None or self.project(dep["projectId"], req) is None:
            return self._err(404, "The deployment could not be found.")
        return Response(200, self.view(dep))

    def list(self, req: Request) -> Response:
        deps = sorted(self.deployments.values(), key=lambda d: d["createdAt"], reverse=True)
        if self.team_id is not None and req.q("teamId") != self.team_id:
            deps = []
        filters = {"projectId": req.q("projectId"), "target": req.q("target")}
        for key, want in filters.items():
            if want is not None:
                deps = [d for d in deps if (d.get(key) or "preview") == want]
        if req.q("state"):
            deps = [d for d in deps if d["readyState"] in str(req.q("state")).split(",")]
        if req.q("sha"):
            deps = [d for d in deps if d["gitSource"].get("sha") == req.q("sha")]
        if req.q("until"):
            deps = [d for d in deps if d["createdAt"] < int(str(req.q("until")))]
        if req.q("rollbackCandidate") is not None:
            want_candidates = str(req.q("rollbackCandidate")).lower() == "true"
            deps = [d for d in deps if self.candidate(d) == want_candidates]
        limit = min(int(req.q("limit") or 20), 100)
        page = deps[:limit]
        nxt = page[-1]["createdAt"] if len(deps) > limit else None
        return Response(200, {"deployments": [self.list_item(d) for d in page],
                              "pagination": {"count": len(page), "next": nxt, "prev": None}})

    def get_project(self, req: Request) -> Response:
        project = self.project(req.params["id"], req)
        if project is None:
            return self._err(404, "Project not found")
        prod = project["targets"]["production"]
        targets = {"production": self.view(self.deployments[prod]) if prod else None}
        return Response(200, {**project, "targets": targets})

    def _alias(self, req: Request, kind: str) -> Response:
        project = self.project(req.params["id"], req)
        dep = self.deployments.get(req.params["dep"])
        if project is None or dep is None or dep["projectId"] != project["id"]:
            return self._err(404, "Project or deployment not found")
        if dep["readyState"] != "READY":
            return self._err(400, f"Deployment {dep['id']} is not ready")
        current = project["targets"]["production"]
        rollout = project.get("rollout") or {}
        if kind == "rollback" and rollout.get("state") == "ACTIVE" and dep["id"] == current:
            canary = self.deployments[rollout["canaryDeployment"]["id"]]  # Instant Rollback aborts the release
            canary["readySubstate"] = "STAGED"
            rollout.update(state="ABORTED", activeStage=None, nextStage=None, updatedAt=int(time.time() * 1000))
            project["lastRollbackTarget"] = {"fromDeploymentId": canary["id"], "toDeploymentId": dep["id"],
                                             "jobStatus": "succeeded", "requestedAt": int(time.time() * 1000),
                                             "type": "rollback"}
            return Response(201, None)
        if kind == "rollback" and (not self.candidate(dep) or dep["id"] == current):
            return self._err(409, "Deployment is not a rollback candidate")
        job = {"fromDeploymentId": current, "toDeploymentId": dep["id"], "jobStatus": "pending",
               "requestedAt": int(time.time() * 1000), "type": kind}
        project["lastAliasRequest"] = job
        if kind == "rollback":
            project["lastRollbackTarget"] = dict(job)
        return Response(201 if kind == "rollback" else 202, None)

    def promote(self, req: Request) -> Response:
        return self._alias(req, "promote")

    def rollback(self, req: Request) -> Response:
        return self._alias(req, "rollback")

    # -- rolling releases ------------------------------------------------------------------------------------------
    def _start_rollout(self, project: dict[str, Any], dep: dict[str, Any], now: float) -> None:
        cfg = project["rollingRelease"]
        raw = cfg.get("stages") if isinstance(cfg, dict) else None
        stages = [{"index": i, "isFinalStage": st["targetPercentage"] == 100,
                   "targetPercentage": st["targetPercentage"], "requireApproval": bool(st.get("requireApproval")),
                   "duration": st.get("duration")}
                  for i, st in enumerate(raw or []) if isinstance(st, dict)]
        manual = any(st["requireApproval"] for st in stages)
        project["rollout"] = {
            "state": "ACTIVE", "currentDeployment": self.view(self.deployments[project["targets"]["production"]])
            if project["targets"]["production"] else None, "canaryDeployment": self.view(dep),
            "advancementType": "manual-approval" if manual else "automatic", "stages": stages,
            "activeStage": stages[0] if stages else None, "nextStage": stages[1] if len(stages) > 1 else None,
            "startedAt": int(now * 1000), "updatedAt": int(now * 1000), "queuedDeploymentId": None,
        }

    def canary_share(self, project_name: str) -> float:
        """The share of visitors the canary serves now (0 when no release is ACTIVE)."""
        project = next(p for p in self.projects.values() if p["name"] == project_name)
        rollout = project.get("rollout") or {}
        if rollout.get("state") != "ACTIVE" or not rollout.get("activeStage"):
            return 0.0
        return float(rollout["activeStage"]["targetPercentage"]) / 100

    def _rr_project(self, req: Request) -> tuple[dict[str, Any] | None, Response | None]:
        project = self.project(req.params["id"], req)
        return (project, None) if project is not None else (None, self._err(404, "Project not found"))

    def rr_config(self, req: Request) -> Response:
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        body = req.json() or {}
        stages = body.get("stages")
        if not isinstance(stages, list) or len(stages) < 2:
            return self._err(400, "Invalid request: `stages` should have at least 2 items.")
        pcts = [st.get("targetPercentage") if isinstance(st, dict) else None for st in stages]
        if not all(isinstance(p, int | float) and 0 < p <= 100 for p in pcts) or pcts[-1] != 100 or any(
                b <= a for a, b in pairwise(pcts)):
            return self._err(400, "Invalid request: each stage must serve more than the one before, the last 100.")
        project["rollingRelease"] = {"target": body.get("target", "production"), "stages": stages}
        return Response(200, {"rollingRelease": project["rollingRelease"]})

    def rr_config_get(self, req: Request) -> Response:
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        return Response(200, {"rollingRelease": project["rollingRelease"]})

    def rr_config_delete(self, req: Request) -> Response:
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        project["rollingRelease"] = None  # the next production deployment goes out at once; an ACTIVE one stays
        return Response(200, {"rollingRelease": None})

    def rr_get(self, req: Request) -> Response:
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        return Response(200, {"rollingRelease": project.get("rollout")})

    def _active(self, project: dict[str, Any], req: Request) -> tuple[dict[str, Any] | None, Response | None]:
        rollout = project.get("rollout") or {}
        body = req.json() or {}
        if not body.get("canaryDeploymentId"):
            return None, self._err(400, "Invalid request: missing required property `canaryDeploymentId`.")
        if rollout.get("state") != "ACTIVE" or rollout["canaryDeployment"]["id"] != body["canaryDeploymentId"]:
            return None, self._err(400, "No active rolling release for this canary deployment")
        return rollout, None

    def rr_approve(self, req: Request) -> Response:
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        rollout, err = self._active(project, req)
        if rollout is None:
            return err or self._err(400, "No active rolling release")
        nxt = (req.json() or {}).get("nextStageIndex")
        if not isinstance(nxt, int) or nxt != rollout["activeStage"]["index"] + 1 or nxt >= len(rollout["stages"]):
            return self._err(400, f"Invalid nextStageIndex {nxt!r}")
        stage = rollout["stages"][nxt]
        if stage["isFinalStage"]:
            return self._complete(project, rollout)
        rollout.update(activeStage=stage, nextStage=rollout["stages"][nxt + 1], updatedAt=int(time.time() * 1000))
        return Response(200, {"rollingRelease": rollout})

    def rr_complete(self, req: Request) -> Response:
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        rollout, err = self._active(project, req)
        if rollout is None:
            return err or self._err(400, "No active rolling release")
        return self._complete(project, rollout)

    def rr_start(self, req: Request) -> Response:
        """`POST .../rolling-release/start` {canaryDeploymentId} (/docs/rest-api/rolling-release/start-a-rolling-
        release-for-the-project): "Start a rolling release for a deployment. If a rolling release is already active for
        the same canary deployment, returns the current state without side effects." The reference lists no error
        cases; the fake refuses what cannot be a canary (no config, not a READY production deployment of the project,
        the deployment already serving, another release active) instead of guessing a success."""
        project, err = self._rr_project(req)
        if project is None:
            return err or self._err(404, "Project not found")
        dep_id = (req.json() or {}).get("canaryDeploymentId")
        if not isinstance(dep_id, str) or not dep_id:
            return self._err(400, "Invalid request: missing required property `canaryDeploymentId`.")
        rollout = project.get("rollout") or {}
        if rollout.get("state") == "ACTIVE" and rollout["canaryDeployment"]["id"] == dep_id:
            return Response(200, {"rollingRelease": rollout})  # documented: the current state, no side effect
        if not project["rollingRelease"]:
            return self._err(400, "Rolling releases are not enabled for this project")
        dep = self.deployments.get(dep_id)
        if dep is None or dep["projectId"] != project["id"]:
            return self._err(404, "Deployment not found")
        if dep["target"] != "production" or dep["readyState"] != "READY" or dep["aliased"]:
            return self._err(400, "The canary must be a READY production deployment that does not serve yet")
        if rollout.get("state") == "ACTIVE":
            return self._err(409, "Another rolling release is active for this project")
        dep["readySubstate"] = "ROLLING"
        self._start_rollout(project, dep, time.time())
        return Response(200, {"rollingRelease": project["rollout"]})

    def _complete(self, project: dict[str, Any], rollout: dict[str, Any]) -> Response:
        self._to_production(project, self.deployments[rollout["canaryDeployment"]["id"]])
        rollout.update(state="COMPLETE", activeStage=rollout["stages"][-1], nextStage=None,
                       updatedAt=int(time.time() * 1000))
        return Response(200, {"rollingRelease": rollout})
