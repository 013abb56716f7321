"""Settings of the `kubernetes` and `gke` service targets, validated into ConfigError naming the field."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from providers.clients.retry import VENDOR_BUDGET
from providers.errors import ConfigError

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
REPOSITORY = re.compile(r"^[a-z0-9]+([._\-/:][a-z0-9]+)*$")


class KubeSettings(BaseModel):
    """`services.<name>.settings` of a `kubernetes` or `gke` service.

    The target sets the image of `containers` in Deployment `namespace/deployment` to `<repository>:<git sha>`.
    Plain Kubernetes reads `kubeconfig` (+ `context`); GKE reads cluster `project/location/cluster` through the
    GKE API (`gke_api_url` overrides its endpoint, for tests).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="default", description="namespace of the Deployment")
    deployment: str | None = Field(default=None, description="Deployment name (default: the service name)")
    containers: list[str] = Field(
        default_factory=list, description="containers whose image is set (default: the Deployment's only container)"
    )
    repository: str = Field(description="image repository without tag, e.g. us-docker.pkg.dev/proj/repo/api")
    kubeconfig: str | None = Field(default=None, description="kubeconfig path (kubernetes; default ~/.kube/config)")
    context: str | None = Field(default=None, description="kubeconfig context (kubernetes)")
    project: str | None = Field(default=None, description="GCP project id (gke)")
    location: str | None = Field(default=None, description="GKE cluster region or zone (gke)")
    cluster: str | None = Field(default=None, description="GKE cluster name (gke)")
    gke_api_url: str | None = Field(default=None, description="GKE API endpoint override (gke; tests)")
    url: str | None = Field(default=None, description="public URL of the Service (what checks observe)")
    service: str | None = Field(
        default=None, description="the Service routing to the Deployment's pods: a canary refuses to start when "
        "it would not select the canary's pods")
    canary_url: str | None = Field(
        default=None, description="URL reaching only the canary's pods (e.g. an Ingress for track=canary); "
        "default: a ready canary pod's http://<podIP>:<port>, reachable from inside the cluster or its VPC")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="container port of the canary pod URL (default: the first "
        "containerPort of the updated container)")
    zero_downtime: Literal["refuse", "warn", "off"] = Field(
        default="refuse", description="what to do when the Deployment's strategy can drop serving capacity"
    )
    poll_interval_s: float = Field(default=2.0, gt=0, le=60, description="wait_ready polling interval")
    request_timeout_s: float = Field(default=30.0, gt=0, le=600, description="timeout of one API call")
    api_attempts: int = Field(
        default=VENDOR_BUDGET.attempts, ge=1, le=20, description="tries of one API call on transient errors")
    api_backoff_s: float = Field(
        default=VENDOR_BUDGET.backoff_s, ge=0, le=60, description="first backoff between tries (doubles)")
    api_max_wait_s: float = Field(
        default=VENDOR_BUDGET.max_wait_s, ge=0, le=600, description="longest wait between tries")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError("must be a DNS-1123 label (lower-case letters, digits, '-')")
        return v

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, v: str | None) -> str | None:
        if v is not None and not DNS_SUBDOMAIN.match(v):
            raise ValueError("must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')")
        return v

    @field_validator("containers")
    @classmethod
    def _containers(cls, v: list[str]) -> list[str]:
        for name in v:
            if not DNS_LABEL.match(name):
                raise ValueError(f"container name {name!r} must be a DNS-1123 label")
        if len(set(v)) != len(v):
            raise ValueError("container names must be unique")
        return v

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str) -> str:
        last = v.rsplit("/", 1)[-1]
        if "@" in v or ":" in last:
            raise ValueError("give the repository without a tag or digest (the target appends :<git sha>)")
        if not REPOSITORY.match(v):
            raise ValueError("not a valid image repository")
        return v

    @field_validator("gke_api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+/?$", v):
            raise ValueError("must be a base URL such as https://container.googleapis.com")
        return v

    @field_validator("url", "canary_url")
    @classmethod
    def _service_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("must be an http(s) URL such as https://api.example.com")
        return v

    @field_validator("service")
    @classmethod
    def _service(cls, v: str | None) -> str | None:
        if v is not None and not DNS_LABEL.match(v):
            raise ValueError("must be a DNS-1123 label (a Service name)")
        return v


def parse_settings(service: str, provider: str, raw: dict[str, Any]) -> KubeSettings:
    """Validate `raw` for `provider` ("kubernetes" or "gke"); ConfigError names `services.<name>.settings.<field>`."""
    base = f"services.{service}.settings"
    try:
        settings = KubeSettings.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"])
        where = f"{base}.{field}" if field else base
        more = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[1:])
        raise ConfigError(first["msg"] + (f" (also {more})" if more else ""), where) from None
    gke_fields = ("project", "location", "cluster", "gke_api_url")
    kube_fields = ("kubeconfig", "context")
    if provider == "gke":
        for name in ("project", "location", "cluster"):
            if not getattr(settings, name):
                raise ConfigError(f"required for provider gke ({name} of the GKE cluster)", f"{base}.{name}")
        for name in kube_fields:
            if getattr(settings, name) is not None:
                raise ConfigError("not used by provider gke (the cluster is read from the GKE API)", f"{base}.{name}")
    else:
        for name in gke_fields:
            if getattr(settings, name) is not None:
                raise ConfigError("only for provider gke (use kubeconfig/context)", f"{base}.{name}")
    return settings
