"""A stateful fake of Railway's public GraphQL API (deploy, deployment, deployments, rollback), on graphql-core."""

from __future__ import annotations

import json
import time
from typing import Any

from graphql import GraphQLError, build_schema, graphql_sync

from tests.fakes.base import Request, Response
from tests.fakes.timed import TimedFake, iso, stage

# The part of Railway's public schema (https://backboard.railway.com/graphql/v2) the railway target uses.
SDL = """
scalar DateTime
scalar JSON
enum DeploymentStatus { BUILDING CRASHED DEPLOYING FAILED INITIALIZING NEEDS_APPROVAL QUEUED REMOVED REMOVING
                        SKIPPED SLEEPING SUCCESS WAITING }
type Deployment { id: String! status: DeploymentStatus! createdAt: DateTime! updatedAt: DateTime!
                  serviceId: String environmentId: String! projectId: String! url: String staticUrl: String
                  meta: JSON canRollback: Boolean! canRedeploy: Boolean! }
type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
type QueryDeploymentsConnectionEdge { cursor: String! node: Deployment! }
type QueryDeploymentsConnection { edges: [QueryDeploymentsConnectionEdge!]! pageInfo: PageInfo! }
input DeploymentStatusInput { in: [DeploymentStatus!] notIn: [DeploymentStatus!] }
input DeploymentListInput { environmentId: String projectId: String serviceId: String
                            status: DeploymentStatusInput includeDeleted: Boolean }
type Query {
  deployment(id: String!): Deployment!
  deployments(input: DeploymentListInput!, first: Int, after: String, last: Int, before: String):
    QueryDeploymentsConnection!
}
type Mutation {
  serviceInstanceDeployV2(commitSha: String, environmentId: String!, serviceId: String!): String!
  deploymentRollback(id: String!): Boolean!
  deploymentCancel(id: String!): Boolean!
}
"""
SCHEMA = build_schema(SDL)
SUCCEEDED = ("SUCCESS", "SLEEPING", "REMOVING", "REMOVED")  # went live at some point: can be rolled back to
SETTLED = ("SUCCESS", "REMOVED", "FAILED", "CRASHED", "SKIPPED")
RUNNING = ("INITIALIZING", "QUEUED", "WAITING", "NEEDS_APPROVAL", "BUILDING", "DEPLOYING")  # cancellable


class RailwayFake(TimedFake):
    """Railway's public API (https://docs.railway.com/reference/public-api), a real GraphQL schema subset.

    - `serviceInstanceDeployV2(commitSha, environmentId, serviceId): String!` builds that commit; the deployment
      goes INITIALIZING -> BUILDING -> DEPLOYING -> SUCCESS (the previous SUCCESS goes REMOVING, then REMOVED);
      a failing commit ends FAILED after BUILDING. Every `DeploymentStatus` of the schema is produced:
      `end_states[sha]` = CRASHED (after DEPLOYING: the process exited) or SKIPPED (at once: nothing to build for
      this commit), `hold_states[sha]` = WAITING or NEEDS_APPROVAL (stays there until someone acts).
    - `deployment(id)`, `deployments(input: {serviceId, environmentId, status}, first, after)` (Relay connection,
      pages newest first), with `meta.commitHash`, `meta.branch`, `meta.repo`. The order of the edges within a
      page is not documented: this fake returns them by id, so a client must sort by `createdAt` itself.
    - `canRollback` is true for a deployment that went live (SUCCESS, SLEEPING, REMOVING, REMOVED) and is within
      the plan's retention (`expire(id)` ages one out); `deploymentRollback(id): Boolean!` redeploys that
      deployment's image and its variables as a new deployment (no build) and is refused where `canRollback` is
      false (https://docs.railway.com/deployments/deployment-actions#rollback).
    - `deploymentCancel(id: String!): Boolean!` "Cancels a deployment." (railwayapp/cli src/gql/schema.json, the
      public schema the official CLI vendors). `DeploymentStatus` has no cancelled value: a deployment cancelled
      before it served goes REMOVED, is never SUCCESS, and `canRollback` stays false (it never served). Only a
      deployment still on its way (INITIALIZING, QUEUED, WAITING, NEEDS_APPROVAL, BUILDING, DEPLOYING) is
      cancelled; any other gets a GraphQL error (its wording is not documented), an unknown id "Deployment not
      found".
    - A project token's scope is "Single environment in a project" (https://docs.railway.com/reference/public-api,
      Choosing a token type): with `token_environment` set, a call with the project token on another environment
      (deploy, read, list, roll back, cancel) is "Not Authorized".
    - Errors come as HTTP 200 `{"data": null, "errors": [{"message", "locations", "path"}]}`; a refused token is
      `{"errors": [{"message": "Not Authorized"}]}`. Tokens: `Authorization: Bearer` or `Project-Access-Token`.
    """

    STEPS = ("INITIALIZING", "BUILDING", "DEPLOYING")
    ROLLBACK_STEPS = ("INITIALIZING", "DEPLOYING")

    def __init__(self, token: str, step_s: float = 0.2) -> None:
        self.instances: set[tuple[str, str]] = set()  # (serviceId, environmentId)
        self.deployments: list[dict[str, Any]] = []  # newest first
        self.token_environment: str | None = None  # set: the project token reaches this environment only
        super().__init__(token, step_s)

    def routes(self) -> None:
        self.route("POST", r"/graphql/v2", self.graphql)

    def error_body(self, status: int, message: str) -> Any:
        return {"errors": [{"message": message}]}

    def deny(self) -> Response:
        return Response(200, {"data": None, "errors": [{"message": "Not Authorized"}]})

    def authorize(self, req: Request) -> Response | None:
        if req.headers.get("project-access-token") == self.token:
            return None
        return super().authorize(req)

    def is_create(self, req: Request) -> bool:
        return "mutation" in str((json.loads(req.body or b"{}") or {}).get("query", ""))

    # -- state -------------------------------------------------------------------------------------------------
    def add_service(self, service_id: str, environment_id: str) -> None:
        with self.lock:
            self.instances.add((service_id, environment_id))

    def count(self, service_id: str) -> int:
        with self.lock:
            return sum(1 for d in self.deployments if d["serviceId"] == service_id)

    def expire(self, dep_id: str) -> None:
        """Age deployment `dep_id` out of the plan's retention: it can no longer be rolled back to."""
        with self.lock:
            next(d for d in self.deployments if d["id"] == dep_id)["expired"] = True

    def _end(self, dep: dict[str, Any]) -> tuple[tuple[str, ...], str]:
        """The states `dep` passes through and the one it ends in."""
        steps = self.ROLLBACK_STEPS if dep["rollback"] else self.STEPS
        sha = str((dep["meta"] or {}).get("commitHash"))
        if dep["fails"]:
            return steps[:2], "FAILED"
        if sha in self.hold_states and not dep["rollback"]:
            return (), self.hold_states[sha]
        end = "" if dep["rollback"] else self.end_states.get(sha, "")
        if end == "SKIPPED":
            return (), "SKIPPED"
        return steps, end or "SUCCESS"

    def advance(self, now: float) -> None:
        for dep in reversed(self.deployments):
            if dep["status"] == "REMOVING" and now - dep["removing"] >= self.step_s:
                dep["status"], dep["updatedAt"] = "REMOVED", iso(now)
            if dep["status"] in SETTLED or dep["status"] == "REMOVING":
                continue
            steps, end = self._end(dep)
            dep["status"] = stage(dep["created"], now, self.step_s, steps, end, end, False)
            dep["updatedAt"] = iso(now)
            if dep["status"] == "SUCCESS":
                dep["served"] = True
                for other in self.deployments:
                    same = (other["serviceId"], other["environmentId"]) == (dep["serviceId"], dep["environmentId"])
                    if other is not dep and same and other["status"] == "SUCCESS":
                        other["status"], other["removing"] = "REMOVING", now

    def _new(self, service_id: str, environment_id: str, meta: dict[str, Any], fails: bool,
             rollback: bool) -> dict[str, Any]:
        now = time.time()
        dep = {"id": self.new_id("d0c5a1e2-"), "status": "INITIALIZING", "createdAt": iso(now), "updatedAt": iso(now),
               "serviceId": service_id, "environmentId": environment_id, "projectId": "proj-fake",
               "staticUrl": f"{service_id}-production.up.railway.app", "url": None, "meta": meta,
               "created": now, "fails": fails, "rollback": rollback, "expired": False, "removing": 0.0,
               "cancelled": False, "served": False}
        self.deployments.insert(0, dep)
        return dep

    @staticmethod
    def view(dep: dict[str, Any]) -> dict[str, Any]:
        can = dep["status"] in SUCCEEDED and not dep["expired"] and not dep["cancelled"]
        return {**dep, "canRollback": can, "canRedeploy": True}

    # -- resolvers (graphql-core calls them with the schema's argument names) --------------------------------
    def _scope(self, info: Any, environment_id: str | None) -> None:
        """Refuse a project token outside its environment (`token_environment`)."""
        if info.context.get("project_token") and self.token_environment not in (None, environment_id):
            raise GraphQLError("Not Authorized")

    def deployment(self, info: Any, id: str) -> dict[str, Any]:
        dep = next((d for d in self.deployments if d["id"] == id), None)
        if dep is None:
            raise GraphQLError("Deployment not found")
        self._scope(info, dep["environmentId"])
        return self.view(dep)

    def deployments_(self, info: Any, input: dict[str, Any], first: int | None = None, after: str | None = None,
                     **_: Any) -> dict[str, Any]:
        self._scope(info, input.get("environmentId"))
        deps = [d for d in self.deployments
                if all(d[k] == input[k] for k in ("serviceId", "environmentId", "projectId") if input.get(k))]
        wanted = (input.get("status") or {}).get("in")
        unwanted = (input.get("status") or {}).get("notIn") or []
        deps = [d for d in deps if (not wanted or d["status"] in wanted) and d["status"] not in unwanted]
        if after:
            at = next((i for i, d in enumerate(deps) if d["id"] == after), len(deps))
            deps = deps[at + 1:]
        page = deps[: first or 50]
        edges = sorted(page, key=lambda d: str(d["id"]))  # order within a page: not documented
        return {"edges": [{"cursor": d["id"], "node": self.view(d)} for d in edges],
                "pageInfo": {"hasNextPage": len(deps) > len(page), "hasPreviousPage": bool(after),
                             "startCursor": page[0]["id"] if page else None,
                             "endCursor": page[-1]["id"] if page else None}}

    def serviceInstanceDeployV2(self, info: Any, environmentId: str, serviceId: str,
                                commitSha: str | None = None) -> str:
        self._scope(info, environmentId)
        if (serviceId, environmentId) not in self.instances:
            raise GraphQLError("ServiceInstance not found")
        sha = commitSha or "0" * 40
        meta = {"commitHash": sha, "commitMessage": f"commit {sha[:7]}", "branch": "main", "repo": "aevon/app"}
        return str(self._new(serviceId, environmentId, meta, sha in self.fail_shas, False)["id"])

    def deploymentRollback(self, info: Any, id: str) -> bool:
        target = next((d for d in self.deployments if d["id"] == id), None)
        if target is None:
            raise GraphQLError("Deployment not found")
        self._scope(info, target["environmentId"])
        if not self.view(target)["canRollback"]:
            raise GraphQLError("Deployment cannot be rolled back")
        self._new(target["serviceId"], target["environmentId"], dict(target["meta"]), False, True)
        return True

    def deploymentCancel(self, info: Any, id: str) -> bool:
        dep = next((d for d in self.deployments if d["id"] == id), None)
        if dep is None:
            raise GraphQLError("Deployment not found")
        self._scope(info, dep["environmentId"])
        if dep["status"] not in RUNNING:
            raise GraphQLError(f"Deployment is {dep['status']} and cannot be cancelled")
        dep.update(status="REMOVED", cancelled=True, updatedAt=iso(time.time()))
        return True

    def status_of(self, dep_id: str) -> tuple[str, bool]:
        """(status now, whether it ever served) of deployment `dep_id`."""
        with self.lock:
            self.advance(time.time())
            dep = next(d for d in self.deployments if d["id"] == dep_id)
            return str(dep["status"]), bool(dep["served"])

    # -- HTTP --------------------------------------------------------------------------------------------------
    def graphql(self, req: Request) -> Response:
        body = req.json() or {}
        root = _Root(self)
        scope = {"project_token": req.headers.get("project-access-token") == self.token}
        result = graphql_sync(SCHEMA, str(body.get("query", "")), root_value=root, context_value=scope,
                              variable_values=body.get("variables"), operation_name=body.get("operationName"))
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return Response(200, out)


class _Root:
    """The root value: top-level fields of Query and Mutation resolved by the fake."""

    def __init__(self, fake: RailwayFake) -> None:
        self.deployment = fake.deployment
        self.deployments = fake.deployments_
        self.serviceInstanceDeployV2 = fake.serviceInstanceDeployV2
        self.deploymentRollback = fake.deploymentRollback
        self.deploymentCancel = fake.deploymentCancel
