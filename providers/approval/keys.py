"""Who may approve, with which keys: the spec's approvers, an allowed-signers file, and GitHub's published keys."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deployments.spec import ApprovalSpec
from providers.approval.signing import PublicKey, parse_public_key
from providers.errors import AevonError, ConfigError

log = logging.getLogger("aevon.approval")
_LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")


@dataclass
class Approver:
    """One approver: their name, every key that may sign for them, and the identities that make a self-approval."""

    name: str
    keys: list[PublicKey] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)  # where the keys came from, for the plan and the logs

    def key_for(self, key: PublicKey) -> PublicKey | None:
        return next((k for k in self.keys if k.blob == key.blob), None)


def parse_allowed_signers(text: str, where: str) -> dict[str, list[PublicKey]]:
    """OpenSSH allowed-signers lines (`principals [options] ssh-ed25519 AAAA... [comment]`) → name → keys.

    Principals are comma-separated approver names; options (namespaces=, valid-after= ...) are accepted when they
    allow our namespace (a `namespaces=` list without `aevon-deploy-approval` skips the line).
    """
    out: dict[str, list[PublicKey]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        principals, rest = parts[0], parts[1:]
        options = ""
        if rest and not rest[0].startswith("ssh-") and not rest[0].startswith("ecdsa-"):
            options, rest = rest[0], rest[1:]
        m = re.search(r'namespaces="([^"]*)"', options)
        if m and "aevon-deploy-approval" not in m.group(1).split(","):
            continue
        try:
            key = parse_public_key(" ".join(rest))
        except ConfigError as exc:
            raise ConfigError(f"line {n}: {exc}", where) from exc
        for name in principals.split(","):
            out.setdefault(name.strip().strip('"'), []).append(key)
    return out


async def github_keys(login: str, api_url: str, http: httpx.AsyncClient) -> list[PublicKey]:
    """The ssh-ed25519 keys GitHub publishes for `login` (`GET /users/{username}/keys`, no token needed)."""
    if not _LOGIN_RE.match(login):
        raise ConfigError(f"not a GitHub login: {login!r}", "approval.approvers[].github_user")
    resp = await http.get(f"{api_url.rstrip('/')}/users/{login}/keys",
                          headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})
    if resp.status_code == 404:
        raise AevonError(f"GitHub has no user {login!r}")
    if resp.status_code != 200:
        raise AevonError(f"GitHub answered HTTP {resp.status_code} for the keys of {login!r}")
    keys = []
    for item in resp.json():
        try:
            keys.append(parse_public_key(str(item.get("key", ""))))
        except ConfigError:
            continue  # rsa/ecdsa keys cannot sign approvals here; the others still can
    return keys


async def load_approvers(
    spec: ApprovalSpec, spec_file: Path, http: httpx.AsyncClient | None = None
) -> dict[str, Approver]:
    """Every approver with their keys. A GitHub lookup that fails is logged and leaves the other keys usable.

    Raises:
        ConfigError: a malformed inline key, or an allowed-signers file that is missing or malformed.
    """
    found: dict[str, Approver] = {}
    for i, entry in enumerate(spec.approvers):
        who = found.setdefault(entry.name, Approver(entry.name, identities={entry.name}))
        who.identities.update(entry.aliases)
        if entry.public_key:
            try:
                who.keys.append(parse_public_key(entry.public_key))
            except ConfigError as exc:
                raise ConfigError(str(exc), f"{spec_file}: approval.approvers[{i}].public_key") from exc
            who.sources.append("spec")
        if entry.github_user:
            who.identities.add(entry.github_user)
    if spec.allowed_signers:
        path = (spec_file.parent / spec.allowed_signers).resolve()
        if not path.is_file():
            raise ConfigError(f"allowed-signers file {path} not found", f"{spec_file}: approval.allowed_signers")
        for name, keys in parse_allowed_signers(path.read_text(), str(path)).items():
            who = found.setdefault(name, Approver(name, identities={name}))
            who.keys.extend(keys)
            who.sources.append(path.name)
    logins = [(e.name, e.github_user) for e in spec.approvers if e.github_user]
    if logins:
        own = http is None
        client = http or httpx.AsyncClient(timeout=15)
        try:
            for name, login in logins:
                try:
                    keys = await github_keys(str(login), spec.github_api_url, client)
                except (AevonError, httpx.HTTPError) as exc:
                    log.warning("keys of %s from GitHub (%s) not read: %s", name, login, exc)
                    continue
                found[name].keys.extend(keys)
                found[name].sources.append(f"github:{login}")
        finally:
            if own:
                await client.aclose()
    return found
