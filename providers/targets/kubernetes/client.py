"""Builds the kubernetes ApiClient: from a kubeconfig, or from a GKE cluster read with google-cloud-container."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from urllib3.util.retry import Retry

from providers.errors import PermanentError, TransientError
from providers.targets.kubernetes.api import Connection
from providers.targets.kubernetes.settings import KubeSettings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Cluster.Status values (GKE REST v1, projects.locations.clusters): which ones let us talk to the control plane.
GKE_USABLE = frozenset({"RUNNING", "RECONCILING", "DEGRADED"})
GKE_NOT_YET = frozenset({"PROVISIONING", "STATUS_UNSPECIFIED"})


def set_bearer_token(cfg: k8s.Configuration, token: str) -> None:
    """Send `Authorization: Bearer <token>` on every call (the client's `BearerToken` auth setting)."""
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}


def client_from_kubeconfig(path: str | None, context: str | None, token: str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file (default: $KUBECONFIG / ~/.kube/config); `token` overrides its user."""
    cfg = k8s.Configuration()
    cfg.retries = Retry(total=0)  # urllib3 would retry 3 times more under RetryingCaller: one retry layer only
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
    except (k8s_config.ConfigException, OSError) as exc:
        where = path or "the default kubeconfig"
        raise PermanentError(
            f"cannot load {where} (context {context or 'current'}): {type(exc).__name__}", provider="kubernetes"
        ) from exc
    if token:
        set_bearer_token(cfg, token)
    return k8s.ApiClient(cfg)


@dataclass(frozen=True)
class GkeCluster:
    """What the GKE API says about a cluster: where its control plane is and which CA signs it."""

    name: str
    endpoint: str
    ca_pem: str
    status: str


def cluster_path(project: str, location: str, cluster: str) -> str:
    """The resource name of a cluster: projects/<p>/locations/<l>/clusters/<c>."""
    return f"projects/{project}/locations/{location}/clusters/{cluster}"


def google_credentials(token: str | None) -> Any:
    """Google credentials: a static access token when given, else Application Default Credentials."""
    if token:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token)  # type: ignore[no-untyped-call]
    import google.auth

    credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials


def cluster_manager(credentials: Any, api_url: str | None) -> Any:
    """A ClusterManagerClient over REST; `api_url` (for example a local fake) replaces the Google endpoint."""
    from google.cloud.container_v1 import ClusterManagerClient

    options: dict[str, Any] = {}
    if api_url:
        options["api_endpoint"] = api_url.rstrip("/")
    return ClusterManagerClient(transport="rest", credentials=credentials, client_options=options or None)


def read_cluster(manager: Any, name: str, timeout: float) -> GkeCluster:
    """GET /v1/{name} (projects.locations.clusters.get) -> endpoint + masterAuth.clusterCaCertificate. Blocking."""
    cluster = manager.get_cluster(name=name, retry=None, timeout=timeout)
    status = type(cluster).Status(cluster.status).name
    if status in GKE_NOT_YET:
        raise TransientError(f"cluster is {status}", provider="gke", resource=name)
    if status not in GKE_USABLE:
        raise PermanentError(f"cluster is {status}", provider="gke", resource=name)
    if not cluster.endpoint:
        raise PermanentError("cluster has no endpoint", provider="gke", resource=name)
    ca_b64 = cluster.master_auth.cluster_ca_certificate if cluster.master_auth else ""
    if not ca_b64:
        raise PermanentError("cluster has no masterAuth.clusterCaCertificate", provider="gke", resource=name)
    try:
        ca_pem = base64.b64decode(ca_b64, validate=True).decode("ascii")
    except ValueError as exc:
        raise PermanentError("masterAuth.clusterCaCertificate is not base64", provider="gke", resource=name) from exc
    return GkeCluster(name=name, endpoint=cluster.endpoint, ca_pem=ca_pem, status=status)


class GoogleTokenHook:
    """`Configuration.refresh_api_key_hook`: refreshes Google credentials when stale and sets the bearer token.

    The kubernetes client calls it before each request (from worker threads, hence the lock).
    """

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()

    def __call__(self, cfg: k8s.Configuration) -> None:
        with self._lock:
            if not self.credentials.valid:
                import google.auth.transport.requests

                self.credentials.refresh(google.auth.transport.requests.Request())
            set_bearer_token(cfg, str(self.credentials.token))


def client_for_gke(cluster: GkeCluster, credentials: Any) -> k8s.ApiClient:
    """An ApiClient for the cluster's control plane: https://<endpoint>, its CA, a Google bearer token."""
    cfg = k8s.Configuration()
    cfg.retries = Retry(total=0)  # urllib3 would retry 3 times more under RetryingCaller: one retry layer only
    cfg.host = f"https://{cluster.endpoint}"
    cfg.ca_cert_data = cluster.ca_pem
    cfg.verify_ssl = True
    hook = GoogleTokenHook(credentials)
    hook(cfg)
    cfg.refresh_api_key_hook = hook  # type: ignore[assignment]  # typed as None in the client
    return k8s.ApiClient(cfg)


def kubeconfig_connection(settings: KubeSettings, token: str | None, injected: Any = None) -> Connection:
    """`kubernetes`: the kubeconfig of the settings (or an injected ApiClient)."""
    if injected is not None:
        client = cast(k8s.ApiClient, injected)
        return Connection(lambda: client, "injected ApiClient", "connect", owns_client=False)

    def connect() -> k8s.ApiClient:
        return client_from_kubeconfig(settings.kubeconfig, settings.context, token)

    return Connection(connect, f"kubeconfig {settings.kubeconfig or '(default)'}", "load kubeconfig", True)


def gke_connection(settings: KubeSettings, token: str | None, extra: dict[str, object]) -> Connection:
    """`gke`: read the cluster with google-cloud-container, then a client for its control plane.

    `extra` may inject "api_client" (skips the lookup), "cluster_manager" (a ClusterManagerClient) and
    "google_credentials"; otherwise `token` is a static access token, else Application Default Credentials.
    """
    assert settings.project and settings.location and settings.cluster
    name = cluster_path(settings.project, settings.location, settings.cluster)
    injected = extra.get("api_client")
    if injected is not None:
        client = cast(k8s.ApiClient, injected)
        return Connection(lambda: client, name, "connect", owns_client=False)
    manager = extra.get("cluster_manager")
    given = extra.get("google_credentials")
    timeout = settings.request_timeout_s

    def connect() -> k8s.ApiClient:
        credentials = given if given is not None else google_credentials(token)
        lookup = manager if manager is not None else cluster_manager(credentials, settings.gke_api_url)
        return client_for_gke(read_cluster(lookup, name, timeout), credentials)

    return Connection(connect, name, "GET cluster (GKE API)", owns_client=True)
