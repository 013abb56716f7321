"""Approval signatures: SSH signatures (OpenSSH's SSHSIG, as `ssh-keygen -Y sign`) over a canonical message."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from providers.errors import ConfigError

# OpenSSH PROTOCOL.sshsig: magic, version 1, namespace separates our signatures from git's or file signatures.
MAGIC = b"SSHSIG"
VERSION = 1
NAMESPACE = "aevon-deploy-approval"
HASH_ALG = "sha512"
KEY_TYPE = "ssh-ed25519"
ARMOR_BEGIN, ARMOR_END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"


class SignatureError(ValueError):
    """A signature that cannot be read, or that does not verify (message names which)."""


@dataclass(frozen=True)
class PublicKey:
    """An ssh-ed25519 public key: its wire blob, and the comment of the line it came from."""

    blob: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """`SHA256:...` as `ssh-keygen -l` prints it."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    def openssh(self) -> str:
        """The `ssh-ed25519 AAAA...` line (without comment)."""
        return f"{KEY_TYPE} {base64.b64encode(self.blob).decode()}"

    def _key(self) -> Ed25519PublicKey:
        kind, rest = _read_string(self.blob, 0)
        raw, _ = _read_string(self.blob, rest)
        if kind != KEY_TYPE.encode() or len(raw) != 32:
            raise SignatureError("not an ssh-ed25519 key")
        return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class ApprovalMessage:
    """What an approver signs: the run, the decision, the plan they read, destructive or not, and their reason."""

    run_id: str
    decision: str  # "approve" | "reject"
    plan_sha256: str
    allow_destructive: bool
    reason: str

    def canonical(self) -> bytes:
        """The exact bytes signed: one `key: value` per line, fixed order, the reason as its SHA-256."""
        reason = hashlib.sha256(self.reason.strip().encode()).hexdigest()
        return (f"aevon-deploy approval v1\nrun: {self.run_id}\ndecision: {self.decision}\n"
                f"plan-sha256: {self.plan_sha256}\nallow-destructive: {str(self.allow_destructive).lower()}\n"
                f"reason-sha256: {reason}\n").encode()


def plan_digest(plan_markdown: str) -> str:
    """Hex SHA-256 of the plan shown in the Resume dialog (the pause's description)."""
    return hashlib.sha256(plan_markdown.encode()).hexdigest()


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise SignatureError("truncated signature")
    (n,) = struct.unpack(">I", buf[pos:pos + 4])
    end = pos + 4 + n
    if end > len(buf):
        raise SignatureError("truncated signature")
    return buf[pos + 4:end], end


def parse_public_key(line: str) -> PublicKey:
    """`ssh-ed25519 AAAA... [comment]` → PublicKey; ConfigError naming what is wrong otherwise."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise ConfigError("a public key is `ssh-ed25519 AAAA... [comment]`")
    if parts[0] != KEY_TYPE:
        raise ConfigError(f"key type {parts[0]!r} is not supported (use ssh-ed25519)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise ConfigError("the public key is not valid base64") from exc
    key = PublicKey(blob, parts[2] if len(parts) > 2 else "")
    try:
        key._key()
    except (SignatureError, ValueError) as exc:
        raise ConfigError(f"not an ssh-ed25519 public key ({exc})") from exc
    return key


def load_private_key(data: bytes, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """An OpenSSH private key file (`ssh-keygen -t ed25519`); ConfigError when it is not ed25519 or is locked."""
    try:
        key = serialization.load_ssh_private_key(data, passphrase)
    except (ValueError, TypeError) as exc:
        hint = " (encrypted: give its passphrase)" if b"bcrypt" in data or "password" in str(exc).lower() else ""
        raise ConfigError(f"not a readable OpenSSH private key{hint}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("only ed25519 keys can sign approvals (ssh-keygen -t ed25519)")
    return key


def public_key_of(key: Ed25519PrivateKey) -> PublicKey:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(_string(KEY_TYPE.encode()) + _string(raw))


def _signed_data(message: bytes, namespace: str) -> bytes:
    digest = hashlib.sha512(message).digest()
    return MAGIC + _string(namespace.encode()) + _string(b"") + _string(HASH_ALG.encode()) + _string(digest)


def sign(key: Ed25519PrivateKey, message: bytes, namespace: str = NAMESPACE) -> str:
    """An armored SSH signature of `message`, the same bytes `ssh-keygen -Y sign -n NAMESPACE` writes."""
    sig = key.sign(_signed_data(message, namespace))
    blob = (MAGIC + struct.pack(">I", VERSION) + _string(public_key_of(key).blob) + _string(namespace.encode())
            + _string(b"") + _string(HASH_ALG.encode()) + _string(_string(KEY_TYPE.encode()) + _string(sig)))
    b64 = base64.b64encode(blob).decode()
    return "\n".join([ARMOR_BEGIN, *(b64[i:i + 70] for i in range(0, len(b64), 70)), ARMOR_END]) + "\n"


def one_line(signature: str) -> str:
    """The signature's base64 on one line (for a one-line text field); `parse_signature` reads both forms."""
    body = signature.replace(ARMOR_BEGIN, "").replace(ARMOR_END, "")  # a pasted armor may have lost its newlines
    return "".join(body.split())


@dataclass(frozen=True)
class Signature:
    """A parsed SSH signature: who claims to have signed (their key) and the raw ed25519 signature."""

    key: PublicKey
    namespace: str
    hash_alg: str
    raw: bytes


def parse_signature(text: str) -> Signature:
    """Armored or one-line SSH signature → Signature; SignatureError when it is not one."""
    body = "".join(one_line(text).split())
    if not body:
        raise SignatureError("no signature")
    try:
        blob = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise SignatureError("the signature is not valid base64") from exc
    if not blob.startswith(MAGIC) or len(blob) < 10 or struct.unpack(">I", blob[6:10])[0] != VERSION:
        raise SignatureError("not an SSH signature (SSHSIG v1)")
    pub, pos = _read_string(blob, 10)
    namespace, pos = _read_string(blob, pos)
    _reserved, pos = _read_string(blob, pos)
    hash_alg, pos = _read_string(blob, pos)
    sig, pos = _read_string(blob, pos)
    kind, spos = _read_string(sig, 0)
    raw, _ = _read_string(sig, spos)
    if kind != KEY_TYPE.encode() or len(raw) != 64:
        raise SignatureError("only ssh-ed25519 signatures are accepted")
    if hash_alg not in (b"sha512", b"sha256"):
        raise SignatureError(f"unsupported hash {hash_alg.decode(errors='replace')!r}")
    return Signature(PublicKey(pub), namespace.decode(errors="replace"), hash_alg.decode(), raw)


def verify(sig: Signature, message: bytes, namespace: str = NAMESPACE) -> None:
    """Raise SignatureError unless `sig` is `sig.key`'s signature of `message` in `namespace`."""
    if sig.namespace != namespace:
        raise SignatureError(f"signed for namespace {sig.namespace!r}, not {namespace!r}")
    digest = (hashlib.sha512 if sig.hash_alg == "sha512" else hashlib.sha256)(message).digest()
    data = MAGIC + _string(namespace.encode()) + _string(b"") + _string(sig.hash_alg.encode()) + _string(digest)
    try:
        sig.key._key().verify(sig.raw, data)
    except InvalidSignature as exc:
        raise SignatureError("the signature does not verify for this run, decision, plan and reason") from exc
