"""A token server for the distribution registry's `auth: token` mode: issues real signed JWTs the registry verifies.

Follows the distribution docs "Token Authentication Specification" (GET `realm?service=...&scope=...`, HTTP Basic
credentials, answer `{"token", "access_token", "expires_in", "issued_at"}`, 401 on bad credentials) and "Token
Authentication Implementation" (a JWS, RS256 here, whose `x5c` header carries a certificate the registry's
`rootcertbundle` trusts; claims iss, sub, aud, exp, nbf, iat, jti and `access` [{type, name, actions}]).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes.base import FakeServer, Request, Response

ISSUER = "aevon-test-issuer"
SERVICE = "aevon-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class RegistryTokenServer(FakeServer):
    """Issues pull/push tokens for `service` to `username`/`password` (anonymous: pull only when allowed)."""

    def __init__(self, *, username: str, password: str, anonymous_pull: bool = False) -> None:
        self.username = username
        self.password = password
        self.anonymous_pull = anonymous_pull
        self.issued: list[dict[str, Any]] = []  # claims of every token issued (never the token itself)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aevon test token issuer")])
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        super().__init__()

    def write_root_bundle(self, path: Path) -> Path:
        """The PEM the registry's `auth.token.rootcertbundle` points at."""
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def routes(self) -> None:
        self.route("GET", r"/token", self._token)

    def error_body(self, status: int, message: str) -> Any:
        return {"errors": [{"code": "UNAUTHORIZED" if status == 401 else "DENIED", "message": message}]}

    def _authenticated(self, req: Request) -> bool | None:
        """True: good credentials; False: bad ones; None: none sent."""
        auth = req.headers.get("authorization", "")
        if not auth:
            return None
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return auth == f"Basic {expected}"

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS (RS256) with the certificate in `x5c`."""
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"

    def _token(self, req: Request) -> Response:
        who = self._authenticated(req)
        if who is False or (who is None and not self.anonymous_pull):
            return Response(401, self.error_body(401, "authentication required"),
                            headers={"WWW-Authenticate": 'Basic realm="aevon-test-token"'})
        if req.q("service") != SERVICE:
            return Response(400, self.error_body(400, "unknown service"))
        access = []
        for scope in req.query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if who else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": repo, "actions": allowed})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": self.username if who else "", "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        self.issued.append(claims)
        token = self.sign(claims)
        return Response(200, {"token": token, "access_token": token, "expires_in": 300,
                              "issued_at": dt.datetime.now(dt.UTC).isoformat()})
