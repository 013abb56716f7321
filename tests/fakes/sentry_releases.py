"""The fake Sentry's releases and deploys: create a release, create and list its deploys (the documented API)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote

from tests.fakes.base import Request, Response

if TYPE_CHECKING:
    from tests.fakes.sentry import FakeSentry


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def create_release(fake: FakeSentry, req: Request) -> Response:
    """POST releases/: https://docs.sentry.io/api/releases/create-a-new-release-for-an-organization/"""
    if (missing := fake._org(req)) is not None:
        return missing
    body = req.json() or {}
    version, slugs = body.get("version"), body.get("projects")
    if not isinstance(version, str) or not version:
        return Response(400, {"version": ["This field is required."]})
    if not isinstance(slugs, list) or not slugs:
        return Response(400, {"projects": ["This field is required."]})
    if any(s not in fake.projects.values() for s in slugs):
        return Response(400, {"projects": ["Invalid project slugs"]})
    with fake.lock:
        if version in fake.releases:
            return Response(208, fake.releases[version])
        release = {
            "id": len(fake.releases) + 1, "version": version, "shortVersion": version[:12],
            "ref": body.get("ref"), "url": body.get("url"), "dateCreated": _iso(datetime.now(UTC).timestamp()),
            "dateReleased": body.get("dateReleased"), "deployCount": 0, "newGroups": 0,
            "projects": [{"id": next(i for i, slug in fake.projects.items() if slug == s), "slug": s,
                          "name": s} for s in slugs],
        }
        fake.releases[version] = release
    return Response(201, release)


def find_release(fake: FakeSentry, req: Request) -> tuple[str, Response | None]:
    """The release `{version}` of the path names, or the 404 to answer."""
    version = unquote(req.params["version"])
    if (missing := fake._org(req)) is not None:
        return version, missing
    if version not in fake.releases:
        return version, Response(404, {"detail": "The requested resource does not exist"})
    return version, None


def create_deploy(fake: FakeSentry, req: Request) -> Response:
    """POST releases/{version}/deploys/: https://docs.sentry.io/api/releases/create-a-new-deploy-for-an-organization/"""
    version, missing = find_release(fake, req)
    if missing is not None:
        return missing
    body = req.json() or {}
    if not isinstance(body.get("environment"), str) or not body["environment"]:
        return Response(400, {"environment": ["This field is required."]})
    with fake.lock:
        deploys = fake.deploys.setdefault(version, [])
        deploy = {
            "id": str(sum(len(d) for d in fake.deploys.values()) + 1), "environment": body["environment"],
            "name": body.get("name"), "url": body.get("url"), "dateStarted": body.get("dateStarted"),
            "dateFinished": body.get("dateFinished") or _iso(datetime.now(UTC).timestamp()),
        }
        deploys.append(deploy)
        fake.releases[version]["deployCount"] = len(deploys)
    return Response(201, deploy)


def list_deploys(fake: FakeSentry, req: Request) -> Response:
    """GET releases/{version}/deploys/, newest first: https://docs.sentry.io/api/releases/list-a-releases-deploys/"""
    version, missing = find_release(fake, req)
    if missing is not None:
        return missing
    with fake.lock:
        return Response(200, list(reversed(fake.deploys.get(version, []))))
