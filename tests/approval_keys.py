"""Throwaway ssh-ed25519 key pairs for approval tests, made at test time (no private key is committed)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def make_key(folder: Path, name: str) -> tuple[Path, str]:
    """Write `<folder>/<name>` (OpenSSH private key, mode 600) and `.pub`; returns (private path, public line)."""
    key = Ed25519PrivateKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode() + f" {name}@test"
    (folder / f"{name}.pub").write_text(public + "\n")
    return private, public
