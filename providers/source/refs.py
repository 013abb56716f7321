"""Git refs and commit SHAs in one place: a well-formed ref, the full-SHA pattern, an environment's ref rule."""

from __future__ import annotations

import re

from deployments.spec import EnvironmentSpec
from providers.errors import ConfigError

REF_LOCATION = "--ref"  # where a ref comes from, for ConfigError: the command line's (or the flow's) --ref
MAX_REF_LENGTH = 200

# git check-ref-format rules that matter here, plus: no leading '-', no whitespace, no '..', no '@{', bounded.
# Patterns are applied with fullmatch: `$` alone would accept a trailing newline ("v1\n").
_REF_RE = re.compile(rf"(?!-)(?!.*\.\.)(?!.*@\{{)(?!.*//)[A-Za-z0-9._/@+-]{{1,{MAX_REF_LENGTH}}}(?<![./])")
SHA_RE = re.compile(r"[0-9a-f]{40}")  # a full commit id, as `git rev-parse` prints it
SHA_PREFIX_RE = re.compile(r"[0-9a-f]{7,40}")  # what a user may type as a (possibly abbreviated) commit id


def validate_ref(ref: str) -> str:
    """Return `ref` when it is a well-formed git ref (branch, tag or SHA), else raise ConfigError at `--ref`."""
    if not ref:
        raise ConfigError("malformed git ref '': a ref is required (branch, tag or SHA)", REF_LOCATION)
    if not _REF_RE.fullmatch(ref) or ref.endswith(".lock"):
        raise ConfigError(f"malformed git ref {ref[:MAX_REF_LENGTH + 1]!r}", REF_LOCATION)
    return ref


def is_full_sha(value: str) -> bool:
    """True for a full 40-hex commit id (lower case, as git prints it)."""
    return SHA_RE.fullmatch(value) is not None


def looks_like_sha(value: str) -> bool:
    """True for 7 to 40 lower-case hex digits: what a typed (abbreviated) commit id looks like."""
    return SHA_PREFIX_RE.fullmatch(value) is not None


def require_sha(sha: str, what: str = "commit", location: str | None = "release.sha") -> str:
    """Return `sha` when it is a full 40-hex commit id, else raise ConfigError naming `what` and `location`."""
    if not is_full_sha(sha):
        raise ConfigError(f"{what}: {sha[:60]!r} is not a full 40-hex commit SHA", location)
    return sha


def check_ref(spec: EnvironmentSpec, ref: str) -> str:
    """The ref rules every command applies before touching anything: well-formed, and the environment's
    `source.ref_pattern` (matched against the whole ref) when it sets one. Returns `ref`; raises ConfigError."""
    validate_ref(ref)
    pattern = spec.source.ref_pattern
    if not pattern:
        return ref
    try:
        matched = re.fullmatch(pattern, ref) is not None
    except re.error as exc:
        raise ConfigError(f"not a valid regular expression: {exc}", "source.ref_pattern") from exc
    if not matched:
        raise ConfigError(
            f"ref {ref!r} does not match the pattern {pattern!r} that environment {spec.environment} requires "
            "(source.ref_pattern)", REF_LOCATION,
        )
    return ref
