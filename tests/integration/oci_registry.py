"""A real OCI registry for tests (Debian's docker-registry on 127.0.0.1) and a client that pushes a small image."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from providers.clients.oci import OCI_INDEX, OCI_MANIFEST

BINARY = "/usr/bin/docker-registry"
ROOT = Path(__file__).resolve().parents[2]


def ensure_binary() -> str | None:
    """The registry binary, installed by scripts/ensure-registry.sh when missing; None when that is impossible."""
    if not Path(BINARY).exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-registry.sh")], check=False, timeout=600,
                       capture_output=True)
    return BINARY if Path(BINARY).exists() else shutil.which("docker-registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryProcess:
    """`docker-registry serve config.yml` with filesystem storage under `root`, on 127.0.0.1:<free port>."""

    def __init__(self, root: Path, *, token_realm: str | None = None, token_service: str = "",
                 token_issuer: str = "", root_bundle: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        auth = ""
        if token_realm:
            auth = (f"auth:\n  token:\n    realm: {token_realm}\n    service: {token_service}\n"
                    f"    issuer: {token_issuer}\n    rootcertbundle: {root_bundle}\n")
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "config.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n{auth}"
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, binary: str, timeout_s: float = 30) -> RegistryProcess:
        log = (self.root / "registry.log").open("wb")
        self.proc = subprocess.Popen([binary, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("registry did not answer /v2/ in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer() -> bytes:
    """A gzipped tar holding one small file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        body = b"hello from the aevon test image\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(body)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class Pusher:
    """Pushes through the distribution API: blob uploads (POST, then PUT ?digest=), then PUT manifest."""

    base_url: str
    token: str | None = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return auth | (extra or {})

    def blob(self, client: httpx.Client, repository: str, data: bytes) -> str:
        digest = _digest(data)
        start = client.post(f"{self.base_url}/v2/{repository}/blobs/uploads/", headers=self._headers())
        assert start.status_code == 202, start.text
        # the upload URL carries its own state in the query: add the digest to it, do not replace it
        location = httpx.URL(self.base_url).join(start.headers["location"]).copy_add_param("digest", digest)
        done = client.put(location, content=data,
                          headers=self._headers({"Content-Type": "application/octet-stream"}))
        assert done.status_code == 201, done.text
        return digest

    def image(self, repository: str, tag: str) -> str:
        """Push a one-layer OCI image as `repository:tag`; returns the manifest digest."""
        with httpx.Client(timeout=30) as client:
            layer = _layer()
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(layer))]},
                                 "config": {"Cmd": ["/hello"]}}).encode()
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": self.blob(client, repository, config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": self.blob(client, repository, layer), "size": len(layer)}],
            }).encode()
            return self._put_manifest(client, repository, tag, manifest, OCI_MANIFEST)

    def index(self, repository: str, tag: str, manifest_tag: str) -> str:
        """Push an OCI index (multi-arch image) naming the manifest already tagged `manifest_tag`."""
        with httpx.Client(timeout=30) as client:
            head = client.head(f"{self.base_url}/v2/{repository}/manifests/{manifest_tag}",
                               headers=self._headers({"Accept": OCI_MANIFEST}))
            assert head.status_code == 200, head.status_code
            index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
                "mediaType": OCI_MANIFEST, "digest": head.headers["docker-content-digest"],
                "size": int(head.headers["content-length"]), "platform": {"architecture": "amd64", "os": "linux"},
            }]}).encode()
            return self._put_manifest(client, repository, tag, index, OCI_INDEX)

    def _put_manifest(self, client: httpx.Client, repository: str, tag: str, body: bytes, media_type: str) -> str:
        resp = client.put(f"{self.base_url}/v2/{repository}/manifests/{tag}", content=body,
                          headers=self._headers({"Content-Type": media_type}))
        assert resp.status_code == 201, resp.text
        return str(resp.headers["docker-content-digest"])
