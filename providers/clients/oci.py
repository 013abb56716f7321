"""OCI distribution client on VendorClient: manifest HEAD with the manifest media types, token challenge followed."""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from providers.clients.http import VendorClient, raise_for_vendor
from providers.errors import ConfigError, PermanentError

# OCI image-spec media types and their Docker predecessors (distribution spec "Pulling manifests")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_CHALLENGE_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class ImageRef:
    """A repository in a registry: `registry` is host[:port] (docker.io for Docker Hub)."""

    registry: str
    repository: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"


def parse_image(ref: str, location: str) -> ImageRef:
    """`127.0.0.1:5000/app/api`, `ghcr.io/org/api`, `library/nginx` -> ImageRef; a tag or digest is refused."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, ref if rest else f"library/{ref}"
    if "@" in repository or ":" in repository:
        raise ConfigError(f"image {ref!r}: give the repository without tag or digest (the tag is the release SHA)",
                          location)
    return image_ref(registry, repository, location)


def image_ref(registry: str, repository: str, location: str) -> ImageRef:
    """A validated ImageRef."""
    if not registry or "/" in registry or not _REPO_RE.match(repository):
        raise ConfigError(f"not a valid image repository: {registry}/{repository}", location)
    return ImageRef(registry=registry, repository=repository)


def valid_tag(tag: str) -> str:
    """`tag` when it is a valid OCI tag, else ConfigError."""
    if not _TAG_RE.match(tag):
        raise ConfigError(f"not a valid image tag: {tag!r}")
    return tag


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {realm, service, scope})."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): (q if q is not None and q != "" else u) for k, q, u in
                            ((m.group(1), m.group(2), m.group(3)) for m in _CHALLENGE_RE.finditer(params))}


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ManifestInfo:
    """What a manifest HEAD told: the digest and media type of the manifest the tag names."""

    digest: str | None
    media_type: str | None


class _RegistryVendor(VendorClient):
    """VendorClient where 401 (a challenge) and 404 (no such manifest) are answers the caller reads."""

    def translate(self, resp: httpx.Response, *, resource: str) -> None:
        if resp.status_code in (401, 404):
            return
        raise_for_vendor(resp, provider=self.provider, resource=resource)


class RegistryClient:
    """Asks registries whether a manifest exists; credentials go only to the registry's token realm or itself."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        username: str | None = None,
        password: SecretStr | None = None,
        insecure_registries: frozenset[str] = frozenset(),
        attempts: int = 4,
    ) -> None:
        self._vendor = _RegistryVendor(http, provider="registry", attempts=attempts)
        self._username = username
        self._password = password
        self._insecure = insecure_registries
        self._tokens: dict[tuple[str, str, str], str] = {}

    def base_url(self, registry: str) -> str:
        host = _DOCKER_HUB_API if registry == DOCKER_HUB else registry
        return f"{'http' if registry in self._insecure else 'https'}://{host}"

    def _basic(self) -> str | None:
        if self._username is None or self._password is None:
            return None
        raw = f"{self._username}:{self._password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def manifest(self, image: ImageRef, tag: str) -> ManifestInfo | None:
        """HEAD the manifest `image:tag`; None when the registry has no such manifest (404)."""
        url = f"{self.base_url(image.registry)}/v2/{image.repository}/manifests/{valid_tag(tag)}"
        resource = f"{image}:{tag}"
        headers = {"Accept": MANIFEST_ACCEPT}
        resp = await self._vendor.request("HEAD", url, resource=resource, headers=headers)
        if resp.status_code == 401:
            auth = await self._answer_challenge(resp, image, resource)
            resp = await self._vendor.request("HEAD", url, resource=resource, headers=headers | {"Authorization": auth})
            if resp.status_code == 401:
                raise PermanentError("HTTP 401: the registry refused our credentials for pull",
                                     provider="registry", resource=resource)
        if resp.status_code == 404:
            return None
        return ManifestInfo(digest=resp.headers.get("docker-content-digest"),
                            media_type=resp.headers.get("content-type"))

    async def _answer_challenge(self, resp: httpx.Response, image: ImageRef, resource: str) -> str:
        """The Authorization value that answers the registry's WWW-Authenticate challenge."""
        scheme, params = parse_challenge(resp.headers.get("www-authenticate", ""))
        if scheme == "basic":
            basic = self._basic()
            if basic is None:
                raise PermanentError("HTTP 401: the registry wants credentials and none are configured",
                                     provider="registry", resource=resource)
            return basic
        if scheme != "bearer" or not params.get("realm"):
            raise PermanentError(f"HTTP 401 with an unsupported challenge ({scheme or 'none'})",
                                 provider="registry", resource=resource)
        scope = params.get("scope") or f"repository:{image.repository}:pull"
        return "Bearer " + await self._token(params["realm"], params.get("service", ""), scope, resource)

    async def _token(self, realm: str, service: str, scope: str, resource: str) -> str:
        """A token from the realm (distribution "Token Authentication Specification"), cached per scope."""
        key = (realm, service, scope)
        if key in self._tokens:
            return self._tokens[key]
        realm_url = httpx.URL(realm)
        if realm_url.scheme not in ("https", "http"):
            raise PermanentError("token realm is not an http(s) URL", provider="registry", resource=resource)
        headers: dict[str, str] = {}
        basic = self._basic()
        plaintext_ok = realm_url.scheme == "https" or _loopback(realm_url.host) or realm_url.netloc.decode() in (
            self._insecure)
        if basic is not None and plaintext_ok:
            headers["Authorization"] = basic
        params = {"scope": scope} | ({"service": service} if service else {})
        resp = await self._vendor.request("GET", realm, resource=resource, params=params, headers=headers)
        if resp.status_code in (401, 404):
            raise PermanentError(f"HTTP {resp.status_code}: the token service at {realm_url.host} refused "
                                 f"{'our credentials' if 'Authorization' in headers else 'anonymous access'}",
                                 provider="registry", resource=resource)
        try:
            body = resp.json()
        except ValueError as exc:
            raise PermanentError("the token service answered no JSON", provider="registry",
                                 resource=resource) from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError("the token service answered no token", provider="registry", resource=resource)
        self._tokens[key] = token
        return token
