"""A stateful fake of the Koyeb REST API calls the koyeb target makes (services, deployments, redeploy)."""

from __future__ import annotations

import copy
import time
from typing import Any

from tests.fakes.base import Request, Response
from tests.fakes.timed import TimedFake, iso, stage


class KoyebFake(TimedFake):
    """Koyeb, as its API reference and OpenAPI models describe it (https://www.koyeb.com/docs/reference/api;
    koyeb/koyeb-api-client-go docs: ServicesApi, DeploymentsApi, Deployment, DeploymentStatus, GitSource, Error).

    - `GET /v1/services/{id}` -> `{"service": {id, name, app_id, status, active_deployment_id,
      latest_deployment_id, ...}}`.
    - `PUT /v1/services/{id}` with `{"definition": {...git {repository, branch, sha} | docker {image}, env [...]}}`
      creates a deployment of that definition -> `{"service": ...}`; `POST /v1/services/{id}/redeploy` with
      `{sha, use_cache, skip_build}` redeploys the latest definition -> `{"deployment": ...}`.
    - `GET /v1/deployments/{id}` -> `{"deployment": {id, service_id, status, definition, messages, created_at,
      succeeded_at, terminated_at, ...}}`; `GET /v1/deployments?service_id=&limit=&offset=&statuses=` ->
      `{"deployments", "limit", "offset", "count", "has_next"}`, newest first.
    - Status flow PENDING -> PROVISIONING -> SCHEDULED -> ALLOCATING -> STARTING -> HEALTHY (the previously
      active deployment goes STOPPED); a failing SHA goes ERRORING then ERROR after PROVISIONING with a build
      message; `end_states[sha]` = DEGRADED (some instances failing their health checks) or UNHEALTHY (all of
      them) ends there after STARTING and the active deployment keeps serving. Those are the DeploymentStatus
      values of the API (koyeb/koyeb-api-client-go docs/DeploymentStatus.md), the ones koyeb-cli's `--wait`
      treats as failures (koyeb/koyeb-cli pkg/koyeb/services_update.go). No rollback call exists.
    - `POST /v1/deployments/{id}/cancel` (Cancel Deployment, koyeb/koyeb-api-client-python spec/openapi.json and
      docs/DeploymentsApi.md `cancel_deployment`): "Deployment cancellation is allowed for the following status:
      pending, provisioning, scheduled". Such a deployment goes CANCELING, then CANCELED after a step, and never
      HEALTHY (the active deployment keeps serving); 200 with `CancelDeploymentReply`, an empty object. Any other
      status gets 400 `ErrorWithFields` {status, code, message, fields} (the documented model; its wording is
      not documented); an unknown id 404 `Error`.
    - Errors: the Error model `{"status", "code", "message"}`; a refused token is a 401 of that shape.
    """

    STEPS = ("PENDING", "PROVISIONING", "SCHEDULED", "ALLOCATING", "STARTING")
    FAIL_STEPS = ("PENDING", "PROVISIONING", "ERRORING")
    SETTLED = ("HEALTHY", "STOPPED", "ERROR", "DEGRADED", "UNHEALTHY", "CANCELED")
    CANCELLABLE = ("PENDING", "PROVISIONING", "SCHEDULED")

    def __init__(self, token: str, step_s: float = 0.2) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.deployments: list[dict[str, Any]] = []  # newest first
        super().__init__(token, step_s)

    def routes(self) -> None:
        self.route("GET", r"/v1/services/(?P<id>[^/]+)", self.get_service)
        self.route("PUT", r"/v1/services/(?P<id>[^/]+)", self.update_service)
        self.route("POST", r"/v1/services/(?P<id>[^/]+)/redeploy", self.redeploy)
        self.route("GET", r"/v1/deployments/(?P<id>[^/]+)", self.get_deployment)
        self.route("POST", r"/v1/deployments/(?P<id>[^/]+)/cancel", self.cancel_deployment)
        self.route("GET", r"/v1/deployments", self.list_deployments)

    def error_body(self, status: int, message: str) -> Any:
        codes = {400: "invalid_argument", 401: "unauthorized", 404: "not_found", 429: "too_many_requests"}
        return {"status": status, "code": codes.get(status, "internal"), "message": message}

    def deny(self) -> Response:
        return Response(401, self.error_body(401, "Unauthorized: the token is invalid"))

    def _err(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    # -- state -------------------------------------------------------------------------------------------------
    def add_service(self, service_id: str, name: str, repository: str, seed_sha: str) -> None:
        """A service as Koyeb creates it: with a first deployment (of `seed_sha`), already healthy."""
        with self.lock:
            now = time.time()
            self.services[service_id] = {"id": service_id, "name": name, "app_id": "app-fake",
                                         "organization_id": "org-fake", "type": "WEB", "status": "HEALTHY",
                                         "created_at": iso(now), "updated_at": iso(now), "version": "1",
                                         "active_deployment_id": "", "latest_deployment_id": ""}
            definition = {"name": name, "type": "WEB", "git": {"repository": repository, "branch": "main",
                                                              "sha": seed_sha, "buildpack": {}},
                          "env": [{"scopes": ["region:fra"], "key": "PORT", "value": "8000"}],
                          "ports": [{"port": 8000, "protocol": "http"}], "regions": ["fra"],
                          "instance_types": [{"scopes": ["region:fra"], "type": "nano"}]}
            dep = self._new(service_id, definition, created=now - 3600)
            self.advance(now)
            assert dep["status"] == "HEALTHY"

    def status_of(self, dep_id: str) -> tuple[str, bool]:
        """(status now, whether it was ever healthy) of deployment `dep_id`."""
        with self.lock:
            self.advance(time.time())
            dep = next(d for d in self.deployments if d["id"] == dep_id)
            return str(dep["status"]), dep["succeeded_at"] is not None

    def count(self, service_id: str) -> int:
        with self.lock:
            return sum(1 for d in self.deployments if d["service_id"] == service_id)

    def _sha(self, definition: dict[str, Any]) -> str:
        image = str((definition.get("docker") or {}).get("image") or "")
        return str((definition.get("git") or {}).get("sha") or image.rpartition(":")[2])

    def _new(self, service_id: str, definition: dict[str, Any], created: float | None = None) -> dict[str, Any]:
        now = time.time() if created is None else created
        service = self.services[service_id]
        dep = {"id": self.new_id("dpl-"), "service_id": service_id, "app_id": service["app_id"],
               "organization_id": service["organization_id"], "parent_id": service["latest_deployment_id"],
               "status": "PENDING", "definition": copy.deepcopy(definition), "messages": [],
               "created_at": iso(now), "updated_at": iso(now), "succeeded_at": None, "terminated_at": None,
               "version": str(sum(1 for d in self.deployments if d["service_id"] == service_id) + 1),
               "created": now, "fails": self._sha(definition) in self.fail_shas, "canceling": 0.0}
        self.deployments.insert(0, dep)
        service["latest_deployment_id"] = dep["id"]
        return dep

    def advance(self, now: float) -> None:
        for dep in reversed(self.deployments):
            if dep["status"] == "CANCELING":
                if now - dep["canceling"] >= self.step_s:
                    dep.update(status="CANCELED", updated_at=iso(now), terminated_at=iso(now))
                continue
            if dep["status"] in self.SETTLED:
                continue
            end = "ERROR" if dep["fails"] else self.end_states.get(self._sha(dep["definition"]), "HEALTHY")
            steps = self.FAIL_STEPS if end == "ERROR" else self.STEPS
            dep["status"] = stage(dep["created"], now, self.step_s, steps, end, end, False)
            dep["updated_at"] = iso(now)
            if dep["status"] in ("DEGRADED", "UNHEALTHY"):
                dep["messages"] = [f"Instance health checks failing ({dep['status'].lower()})"]
            if dep["status"] == "ERROR":
                dep["messages"] = ["Build failed: the buildpack build exited with code 1"]
                dep["terminated_at"] = iso(now)
            if dep["status"] == "HEALTHY":
                dep["succeeded_at"] = iso(now)
                service = self.services[dep["service_id"]]
                old = next((d for d in self.deployments if d["id"] == service["active_deployment_id"]), None)
                if old is not None:
                    old["status"], old["terminated_at"] = "STOPPED", iso(now)
                service["active_deployment_id"] = dep["id"]

    @staticmethod
    def view(dep: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dep.items() if k not in ("created", "fails", "canceling")}

    # -- handlers ----------------------------------------------------------------------------------------------
    def get_service(self, req: Request) -> Response:
        service = self.services.get(req.params["id"])
        return Response(200, {"service": service}) if service else self._err(404, "Service not found")

    def update_service(self, req: Request) -> Response:
        service = self.services.get(req.params["id"])
        if service is None:
            return self._err(404, "Service not found")
        definition = (req.json() or {}).get("definition") or {}
        if not definition.get("git") and not definition.get("docker"):
            return self._err(400, "Validation error: definition needs a git or docker source")
        self._new(service["id"], definition)
        service["updated_at"] = iso(time.time())
        return Response(200, {"service": service})

    def redeploy(self, req: Request) -> Response:
        service = self.services.get(req.params["id"])
        if service is None:
            return self._err(404, "Service not found")
        latest = next(d for d in self.deployments if d["id"] == service["latest_deployment_id"])
        definition = copy.deepcopy(latest["definition"])
        if (req.json() or {}).get("sha") and "git" in definition:
            definition["git"]["sha"] = req.json()["sha"]
        return Response(200, {"deployment": self.view(self._new(service["id"], definition))})

    def get_deployment(self, req: Request) -> Response:
        dep = next((d for d in self.deployments if d["id"] == req.params["id"]), None)
        return Response(200, {"deployment": self.view(dep)}) if dep else self._err(404, "Deployment not found")

    def cancel_deployment(self, req: Request) -> Response:
        dep = next((d for d in self.deployments if d["id"] == req.params["id"]), None)
        if dep is None:
            return self._err(404, "Deployment not found")
        if dep["status"] not in self.CANCELLABLE:
            body = {**self.error_body(400, f"Deployment is {dep['status']}: cancellation is allowed for pending, "
                                           "provisioning and scheduled deployments only"), "fields": []}
            return Response(400, body)
        now = time.time()
        dep.update(status="CANCELING", canceling=now, updated_at=iso(now))
        return Response(200, {})

    def list_deployments(self, req: Request) -> Response:
        deps = [d for d in self.deployments if not req.q("service_id") or d["service_id"] == req.q("service_id")]
        statuses = set(req.query.get("statuses", []))
        deps = [d for d in deps if not statuses or d["status"] in statuses]
        limit, offset = int(req.q("limit") or 10), int(req.q("offset") or 0)
        page = deps[offset: offset + limit]
        return Response(200, {"deployments": [self.view(d) for d in page], "limit": limit, "offset": offset,
                              "count": len(deps), "has_next": offset + limit < len(deps)})
