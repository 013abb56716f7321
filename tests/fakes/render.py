"""A stateful fake of the Render REST API calls the render target makes (deploys, rollback, cursor lists)."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.base import Request, Response
from tests.fakes.timed import TimedFake, iso, stage


class RenderFake(TimedFake):
    """Render, as its public API reference describes it (https://api-docs.render.com/reference), under /v1.

    - `POST /v1/services/{serviceId}/deploys` (/reference/create-deploy): `clearCache`, `commitId` or `imageUrl`;
      201 with the deploy; 202 "Queued" with no body while another deploy of the service is in progress (the new
      one waits in `queued` and starts when that one ends); 409 "The current state of the resource conflicts
      with this request" for a suspended service (`suspend()`).
    - `GET /v1/services/{serviceId}` (/reference/retrieve-service): `id`, `name`, `autoDeploy` yes | no,
      `suspended`; `PATCH /v1/services/{serviceId}` (/reference/update-service) with `{"autoDeploy": "yes"|"no"}`.
      A commit deploy or a rollback leaves `autoDeploy` as it is ("does not disable autodeploys for the
      service"); `push(sid, sha)` is a push to the service's branch: with autoDeploy yes it deploys that commit
      (trigger `new_commit`), over whatever a rollback restored.
    - `GET /v1/services/{serviceId}/deploys/{deployId}` (/reference/retrieve-deploy): `id`, `commit` {id, message,
      createdAt}, `image` {ref, sha}, `status`, `trigger`, `createdAt`, `updatedAt`, `finishedAt`.
    - `GET /v1/services/{serviceId}/deploys` (/reference/list-deploys): `status`, `limit`, `cursor`; answers
      `[{"deploy": {...}, "cursor": "..."}]` newest first, the next page after the given cursor.
    - `POST /v1/services/{serviceId}/rollback` (/reference/rollback-deploy): `deployId`; 201 a new deploy with
      trigger `rollback` that goes live without a build.
    - `POST /v1/services/{serviceId}/deploys/{deployId}/cancel` (/reference/cancel-deploy, "Cancel an in-progress
      deploy for a service"; render-oss/cli pkg/client/client_gen.go `CancelDeploy`): no body; 200 the deploy,
      now `canceled` for good (it never goes live; a deploy queued behind it starts). Only the statuses the
      official CLI offers a cancel for are cancelled (created, build_in_progress, update_in_progress,
      pre_deploy_in_progress: pkg/deploy/util.go `cancellableStatuses`); any other (queued, live, deactivated,
      failed, canceled) gets 400 `{"id": "bad_request", "message"}`, the documented error model (its wording
      is not documented); an unknown service or deploy, or a deploy of another service, 404.
    - Status flow: created -> build_in_progress -> update_in_progress -> live (the previous live deploy becomes
      deactivated); a failing commit ends in build_failed; `end_states[sha]` = update_failed, pre_deploy_failed
      or canceled ends there instead (pre_deploy_in_progress precedes pre_deploy_failed).
    - Errors `{"id", "message"}`; a refused key: 401 `{"id": "unauthorized", "message": "unauthorized"}`.
    """

    STEPS = ("created", "build_in_progress", "update_in_progress")
    ROLLBACK_STEPS = ("created", "update_in_progress")

    RUNNING = ("created", "build_in_progress", "pre_deploy_in_progress", "update_in_progress")
    SETTLED = ("live", "deactivated", "build_failed", "update_failed", "pre_deploy_failed", "canceled")
    CANCELLABLE = ("created", "build_in_progress", "pre_deploy_in_progress", "update_in_progress")

    def __init__(self, token: str, step_s: float = 0.2) -> None:
        self.services: dict[str, list[dict[str, Any]]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        super().__init__(token, step_s)

    def routes(self) -> None:
        self.route("POST", r"/v1/services/(?P<sid>[^/]+)/deploys", self.create)
        self.route("GET", r"/v1/services/(?P<sid>[^/]+)/deploys/(?P<id>[^/]+)", self.get)
        self.route("POST", r"/v1/services/(?P<sid>[^/]+)/deploys/(?P<id>[^/]+)/cancel", self.cancel)
        self.route("GET", r"/v1/services/(?P<sid>[^/]+)/deploys", self.list)
        self.route("POST", r"/v1/services/(?P<sid>[^/]+)/rollback", self.rollback)
        self.route("GET", r"/v1/services/(?P<sid>[^/]+)", self.get_service)
        self.route("PATCH", r"/v1/services/(?P<sid>[^/]+)", self.update_service)

    def error_body(self, status: int, message: str) -> Any:
        ids = {400: "bad_request", 401: "unauthorized", 404: "not_found", 409: "conflict", 429: "rate_limited"}
        return {"id": ids.get(status, str(status)), "message": message}

    def _err(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    # -- state -------------------------------------------------------------------------------------------------
    def add_service(self, service_id: str, auto_deploy: str = "yes") -> None:
        with self.lock:
            self.services.setdefault(service_id, [])
            self.info.setdefault(service_id, {"id": service_id, "name": service_id.removeprefix("srv-"),
                                              "type": "web_service", "autoDeploy": auto_deploy, "branch": "main",
                                              "suspended": "not_suspended", "suspenders": []})

    def suspend(self, service_id: str) -> None:
        with self.lock:
            self.info[service_id].update(suspended="suspended", suspenders=["user"])

    def push(self, service_id: str, sha: str) -> dict[str, Any] | None:
        """A push of `sha` to the service's branch: a `new_commit` deploy when autoDeploy is yes."""
        with self.lock:
            self.advance(time.time())
            if self.info[service_id]["autoDeploy"] != "yes":
                return None
            commit = {"id": sha, "message": f"commit {sha[:7]}", "createdAt": iso(time.time())}
            return self._new(service_id, commit, None, "new_commit", sha in self.fail_shas)

    def count(self, service_id: str) -> int:
        with self.lock:
            return len(self.services[service_id])

    def status_of(self, deploy_id: str) -> tuple[str, bool]:
        """(status now, whether it ever went live) of deploy `deploy_id`."""
        with self.lock:
            self.advance(time.time())
            dep = next(d for ds in self.services.values() for d in ds if d["id"] == deploy_id)
            return str(dep["status"]), bool(dep["was_live"])

    def _path_of(self, dep: dict[str, Any]) -> tuple[tuple[str, ...], str]:
        if dep["fails"]:
            return self.STEPS[:2], "build_failed"
        if dep["trigger"] == "rollback":
            return self.ROLLBACK_STEPS, "live"
        sha = str((dep["commit"] or {}).get("id") or (dep["image"] or {}).get("ref", "").rpartition(":")[2])
        end = self.end_states.get(sha, "live")
        if end == "pre_deploy_failed":
            return ("created", "build_in_progress", "pre_deploy_in_progress"), end
        return self.STEPS, end

    def advance(self, now: float) -> None:
        for deploys in self.services.values():
            for dep in reversed(deploys):  # oldest first, so the newest deploy to go live wins
                if dep["status"] in self.SETTLED:
                    continue
                if dep["status"] == "queued":
                    if any(d["status"] in self.RUNNING for d in deploys):
                        continue
                    dep["created"] = now  # its turn: it starts now
                steps, end = self._path_of(dep)
                dep["status"] = stage(dep["created"], now, self.step_s, steps, end, end, False)
                dep["updatedAt"] = iso(now)
                if dep["status"] in self.SETTLED:
                    dep["finishedAt"] = iso(now)
                if dep["status"] == "live":
                    dep["was_live"] = True
                    for other in deploys:
                        if other is not dep and other["status"] == "live":
                            other["status"] = "deactivated"

    @staticmethod
    def view(dep: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dep.items() if k not in ("created", "fails", "was_live")}

    def _new(self, sid: str, commit: dict[str, Any] | None, image: dict[str, Any] | None, trigger: str,
             fails: bool) -> dict[str, Any]:
        now = time.time()
        busy = trigger != "rollback" and any(d["status"] in self.RUNNING for d in self.services[sid])
        dep = {"id": self.new_id("dep-"), "commit": commit, "image": image, "trigger": trigger,
               "status": "queued" if busy else "created",
               "createdAt": iso(now), "updatedAt": iso(now), "finishedAt": None, "created": now, "fails": fails,
               "was_live": False}
        self.services[sid].insert(0, dep)
        return dep

    # -- handlers ----------------------------------------------------------------------------------------------
    def create(self, req: Request) -> Response:
        sid = req.params["sid"]
        if sid not in self.services:
            return self._err(404, "service not found")
        body = req.json() or {}
        if body.get("commitId") and body.get("imageUrl"):
            return self._err(400, "commitId and imageUrl cannot both be set")
        sha = str(body.get("commitId") or "")
        image = None
        if body.get("imageUrl"):
            ref = str(body["imageUrl"])
            image, sha = {"ref": ref, "sha": "sha256:" + ref.rpartition(":")[2]}, ref.rpartition(":")[2]
        if self.info[sid]["suspended"] != "not_suspended":
            return self._err(409, "cannot deploy a suspended service")
        commit = {"id": sha, "message": f"commit {sha[:7]}", "createdAt": iso(time.time())} if not image else None
        dep = self._new(sid, commit, image, "api", sha in self.fail_shas)
        if dep["status"] == "queued":
            return Response(202, None)
        return Response(201, self.view(dep))

    def get_service(self, req: Request) -> Response:
        info = self.info.get(req.params["sid"])
        return Response(200, info) if info else self._err(404, "service not found")

    def update_service(self, req: Request) -> Response:
        info = self.info.get(req.params["sid"])
        if info is None:
            return self._err(404, "service not found")
        body = req.json() or {}
        if "autoDeploy" in body and body["autoDeploy"] not in ("yes", "no"):
            return self._err(400, "autoDeploy must be one of yes, no")
        info.update({k: v for k, v in body.items() if k == "autoDeploy"})
        return Response(200, info)

    def get(self, req: Request) -> Response:
        dep = next((d for d in self.services.get(req.params["sid"], []) if d["id"] == req.params["id"]), None)
        return Response(200, self.view(dep)) if dep else self._err(404, "deploy not found")

    def list(self, req: Request) -> Response:
        deploys = self.services.get(req.params["sid"])
        if deploys is None:
            return self._err(404, "service not found")
        statuses = {s for v in req.query.get("status", []) for s in v.split(",") if s}
        items = [d for d in deploys if not statuses or d["status"] in statuses]
        cursor = req.q("cursor")
        if cursor:
            at = next((i for i, d in enumerate(items) if d["id"] == cursor), None)
            items = items[at + 1:] if at is not None else []
        limit = max(1, min(int(req.q("limit") or 20), 100))
        return Response(200, [{"deploy": self.view(d), "cursor": d["id"]} for d in items[:limit]])

    def cancel(self, req: Request) -> Response:
        sid = req.params["sid"]
        if sid not in self.services:
            return self._err(404, "service not found")
        dep = next((d for d in self.services[sid] if d["id"] == req.params["id"]), None)
        if dep is None:
            return self._err(404, "deploy not found")
        if dep["status"] not in self.CANCELLABLE:
            return self._err(400, f"deploy {dep['id']} is {dep['status']} and cannot be canceled")
        now = time.time()
        dep.update(status="canceled", updatedAt=iso(now), finishedAt=iso(now))
        return Response(200, self.view(dep))

    def rollback(self, req: Request) -> Response:
        sid = req.params["sid"]
        target = next((d for d in self.services.get(sid, []) if d["id"] == (req.json() or {}).get("deployId")), None)
        if target is None:
            return self._err(404, "deploy not found")
        if target["status"] not in ("live", "deactivated"):
            return self._err(400, "can only roll back to a deploy that was live")
        dep = self._new(sid, target["commit"], target["image"], "rollback", False)
        return Response(201, self.view(dep))
