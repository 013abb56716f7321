"""Pydantic models of an environment spec (deployments/<env>.yaml)."""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SSH_ED25519_RE = re.compile(r"^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]{46,}={0,2}(\s.*)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """Where the target app's code lives; refs are resolved to SHAs here."""

    repo: str = Field(description="git repository: a local path (relative to the spec file) or URL")
    ref_pattern: str | None = Field(
        default=None, description="regex a ref must match (prod: release tags such as v1.4.0)"
    )


class DatabaseSpec(_Strict):
    """The environment's database and how its schema is migrated."""

    provider: str = "prisma"
    url_secret: str = Field(default="DATABASE_URL", description="name of the secret holding the URL")
    schema_path: str = Field(default="prisma/schema.prisma", description="path inside the source checkout")
    migrations_path: str = Field(default="prisma/migrations", description="path inside the source checkout")
    backup: bool = Field(default=False, description="take and verify a backup before migrating (prod)")
    allow_destructive: bool = Field(default=False, description="apply destructive migrations without asking")
    rollback: Literal["code_only", "inverse"] = Field(
        default="code_only",
        description="what a rollback does with the migrations a failed release applied: code_only keeps them (no "
                    "row is ever dropped; the previous release runs on the expanded schema), inverse reverts them "
                    "with the prepared inverse (dev)",
    )
    lock_timeout_ms: int | None = Field(
        default=3000, ge=1, le=600_000,
        description="SET lock_timeout for every migration: a migration waits on a lock no longer than this, then "
                    "fails whole and is retried (None: wait for ever)",
    )
    statement_timeout_ms: int | None = Field(default=None, ge=1, le=86_400_000,
                                             description="SET statement_timeout for every migration (optional)")
    lock_retries: int = Field(default=3, ge=0, le=20, description="retries of a migration that hit lock_timeout")
    lock_retry_backoff_s: float = Field(default=2.0, ge=0, le=300,
                                        description="first wait before a lock retry, doubled each time")
    settings: dict[str, Any] = Field(default_factory=dict)


class CanaryStep(_Strict):
    """One canary step: send `weight` % of the traffic to the new version, wait `pause_s`, then (if `analysis`) run
    the checks marked `canary: true` against it; any blocking result aborts the canary."""

    weight: int = Field(ge=1, le=100, description="percent of the traffic the new version serves in this step")
    pause_s: float = Field(default=0, ge=0, le=86400, description="wait this long at this weight before the analysis")
    analysis: bool = Field(default=True, description="run the `canary: true` checks at the end of this step")


class StrategySpec(_Strict):
    """How a service's new version takes the traffic: all at once (the default) or canary steps."""

    kind: Literal["all_at_once", "canary"] = "all_at_once"
    steps: list[CanaryStep] = Field(default_factory=list, description="canary: weights strictly increasing")

    @model_validator(mode="after")
    def _steps(self) -> StrategySpec:
        if self.kind == "all_at_once" and self.steps:
            raise ValueError("steps: only a canary strategy has steps")
        if self.kind == "canary":
            if not self.steps:
                raise ValueError("steps: a canary needs at least one step, e.g. [{weight: 10}, {weight: 100}]")
            weights = [s.weight for s in self.steps]
            if any(b <= a for a, b in pairwise(weights)):
                raise ValueError(f"steps: weights must increase step by step (got {weights})")
        return self

    @property
    def canary(self) -> bool:
        return self.kind == "canary"


class ServiceSpec(_Strict):
    """One service of the target app and the provider (target) that runs it."""

    name: str
    provider: str = Field(description="registered target name: local, vercel, gke, kubernetes, railway ...")
    settings: dict[str, Any] = Field(default_factory=dict, description="provider-specific settings")
    secrets: dict[str, str] = Field(
        default_factory=dict, description="provider setting name -> secret name (tokens, DATABASE_URL ...)"
    )
    depends_on: list[str] = Field(default_factory=list, description="services deployed before this one")
    ready_timeout_s: float = Field(default=600, gt=0)
    strategy: StrategySpec = Field(default_factory=StrategySpec, description="all_at_once (default) or canary steps")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be lower-case letters, digits and '-', starting with a letter")
        return v


class CheckSpec(_Strict):
    """One gate or validation check: a registered kind with its settings."""

    name: str
    kind: str = Field(description="registered check kind: health, e2e, dast, perf, sentry, prometheus ...")
    service: str | None = Field(default=None, description="the service it observes, when it observes one")
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    on_error: Literal["fail", "pass"] = Field(
        default="fail", description="what an ERROR outcome counts as once its retries are spent"
    )
    error_retries: int = Field(default=2, ge=0, le=20, description="re-runs of a check that returned ERROR")
    retry_delay_s: float = Field(default=1.0, ge=0)
    timeout_s: float = Field(default=300, gt=0)
    exclusive: bool = Field(
        default=False, description="validation: run alone, after the parallel checks (load tests: nothing competes)"
    )
    canary: bool = Field(
        default=False, description="validation: also run at every canary step, against the canary of its service "
                                   "(or of every canary service when it names none)",
    )


STAGE_OF_KIND = {"health": "smoke", "e2e": "functional", "dast": "functional", "sentry": "monitoring",
                 "prometheus": "monitoring", "prometheus_query": "monitoring"}
DEFAULT_STAGES = ("smoke", "functional", "load", "monitoring")
BAKE_KINDS = ("health", "sentry", "prometheus")


class StageSpec(_Strict):
    """One validation stage: its checks run together (`exclusive` ones alone, after); it starts when the last passed."""

    name: str
    checks: list[str] = Field(min_length=1, description="names of validation.checks run in this stage")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be lower-case letters, digits and '-', starting with a letter")
        return v


class ValidationSpec(_Strict):
    """Post-deploy validation: checks in stages after warm-up, the first failure cancels the rest; then the bake."""

    checks: list[CheckSpec] = Field(default_factory=list)
    stages: list[StageSpec] = Field(
        default_factory=list,
        description="stages in order (default: smoke = health; functional = e2e, dast and other kinds; load = "
                    "exclusive checks; monitoring = sentry, prometheus)",
    )
    fail_fast: bool = Field(
        default=True, description="the first blocking result cancels the running checks (false: wait for all, "
                                  "the old behaviour, kept as the benchmark's baseline)",
    )
    bake_s: float = Field(default=0, ge=0, le=86400, description="after the stages pass, keep watching this long")
    bake_interval_s: float = Field(default=30, gt=0, le=3600, description="a bake round starts this often")
    bake_checks: list[str] | None = Field(
        default=None, description="checks repeated during the bake (default: the health, sentry, prometheus ones)"
    )

    def stage_plan(self) -> list[StageSpec]:
        """The stages as they run: the declared ones, or the default grouping by kind (empty stages left out)."""
        if self.stages:
            return list(self.stages)
        groups: dict[str, list[str]] = {name: [] for name in DEFAULT_STAGES}
        for c in self.checks:
            groups["load" if c.exclusive else STAGE_OF_KIND.get(c.kind, "functional")].append(c.name)
        return [StageSpec(name=n, checks=cs) for n, cs in groups.items() if cs]

    def baked(self) -> list[str]:
        """Names of the checks the bake repeats (none when `bake_s` is 0)."""
        if not self.bake_s:
            return []
        if self.bake_checks is not None:
            return list(self.bake_checks)
        return [c.name for c in self.checks if c.kind in BAKE_KINDS]

    @model_validator(mode="after")
    def _stages(self) -> ValidationSpec:
        known = [c.name for c in self.checks]
        seen: dict[str, str] = {}
        for i, st in enumerate(self.stages):
            if [s.name for s in self.stages].count(st.name) > 1:
                raise ValueError(f"stages[{i}].name: duplicate stage {st.name!r}")
            for name in st.checks:
                if name not in known:
                    raise ValueError(f"stages[{i}].checks: unknown check {name!r}")
                if name in seen:
                    raise ValueError(f"stages[{i}].checks: {name!r} is already in stage {seen[name]!r}")
                seen[name] = st.name
        missing = [n for n in known if n not in seen]
        if self.stages and missing:
            raise ValueError(f"stages: checks in no stage: {', '.join(missing)}")
        for name in self.bake_checks or []:
            if name not in known:
                raise ValueError(f"bake_checks: unknown check {name!r}")
        return self


class WarmupRequest(_Strict):
    """One warm-up call (runbook: agent warm-up / pre-caching)."""

    service: str
    path: str = "/"
    method: Literal["GET", "POST", "HEAD"] = "GET"
    repeat: int = Field(default=1, ge=1, le=1000)
    expect_status: int | None = Field(default=None, description="status that counts as success (default: < 500)")
    json_body: dict[str, Any] | None = Field(default=None, description="JSON body (a pre-caching POST)")


class WarmupSpec(_Strict):
    """Requests sent once services are up, before validation (and so before the perf smoke and the first users)."""

    requests: list[WarmupRequest] = Field(default_factory=list)
    concurrency: int = Field(default=4, ge=1, le=64, description="warm-up calls in flight at once")
    budget_s: float = Field(default=60, gt=0, description="calls not started within this are skipped (reported)")
    timeout_s: float = Field(default=10, gt=0, description="timeout of one call")


class RollbackSpec(_Strict):
    """When and how the rollback subflow runs."""

    automatic: bool = Field(default=True, description="roll back by itself when validation or a deploy fails")
    revert_migrations: bool = Field(default=True, description="apply the inverse migration on rollback")
    health_recheck: bool = Field(default=True, description="re-run health checks after rolling back")


class ApproverSpec(_Strict):
    """A person who may answer the approval gate, and the public keys their signed answers are checked with."""

    name: str = Field(min_length=1, description="the name given with `--as` / in the Resume dialog")
    public_key: str | None = Field(default=None, description="`ssh-ed25519 AAAA... [comment]`")
    github_user: str | None = Field(default=None, description="also accept the keys GitHub publishes for this login")
    aliases: list[str] = Field(
        default_factory=list, description="other identities of this person (OS user, Prefect user): self-approval"
    )

    @field_validator("public_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and not SSH_ED25519_RE.match(v.strip()):
            raise ValueError("must be an OpenSSH public key line `ssh-ed25519 AAAA... [comment]` (ed25519 only)")
        return v


class ApprovalSpec(_Strict):
    """The production approval gate: signed answers from listed approvers (keys inline, from a file or GitHub)."""

    required: bool = False
    approvers: list[ApproverSpec] = Field(default_factory=list)
    allowed_signers: str | None = Field(
        default=None, description="ssh allowed-signers file (relative to the spec): principals are approver names"
    )
    github_api_url: str = Field(default="https://api.github.com", description="where `github_user` keys are read")
    timeout_s: float = Field(default=3600, gt=0)

    @field_validator("approvers", mode="before")
    @classmethod
    def _signed(cls, v: Any) -> Any:
        for i, item in enumerate(v if isinstance(v, list) else []):
            if isinstance(item, str):
                raise ValueError(f"[{i}] {item!r}: approvals are signed; give {{name, public_key}} or "
                                 "{name, github_user} (or list the name in allowed_signers)")
        return v

    @property
    def names(self) -> list[str]:
        """The approvers' names, in spec order."""
        return [a.name for a in self.approvers]


class GitHubRecordSpec(_Strict):
    """GitHub as the system of record: a Deployment per run and environment, its statuses, a commit status."""

    repository: str | None = Field(default=None, description="owner/name; default: from source.repo's GitHub URL")
    token_secret: str = Field(default="GITHUB_TOKEN", description="secret: scopes repo_deployment + repo:status")
    api_url: str = Field(default="https://api.github.com", description="GitHub Enterprise: https://HOST/api/v3")
    environment: str | None = Field(default=None, description="GitHub environment name (default: the spec's)")
    environment_url: str | None = Field(default=None, description="the environment's URL shown on GitHub")
    required_contexts: list[str] = Field(default_factory=list, description="commit-status contexts GitHub checks")
    production: bool | None = Field(default=None, description="production_environment (default: env is prod)")
    commit_status: bool = Field(default=True, description="also set the commit status aevon-deploy/<env>")


class RecordsSpec(_Strict):
    """Where each run is recorded besides the ledger (off unless configured)."""

    github: GitHubRecordSpec | None = None


class PromotionSpec(_Strict):
    """What a run does when the ref resolves to the release already serving (a scheduled promotion of an unchanged
    branch): skip it, or deploy and validate it again."""

    skip_unchanged: bool = Field(
        default=False, description="end the run as NothingToPromote, changing nothing, when the SHA is the one that "
                                   "serves and was validated (the ledger's last run succeeded with it, nothing rolled "
                                   "back since); the flow's `force` / `deploy --force` re-deploys anyway",
    )


class EnvironmentSpec(_Strict):
    """A whole environment: its source, database, services, gates, validation, rollback and approval."""

    environment: str
    description: str = ""
    source: SourceSpec
    database: DatabaseSpec | None = None
    services: list[ServiceSpec]
    gates: list[CheckSpec] = Field(default_factory=list)
    warmup: WarmupSpec = Field(default_factory=WarmupSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)
    require_staging_pass: bool = Field(default=False, description="refuse a SHA that did not pass staging")
    records: RecordsSpec = Field(default_factory=RecordsSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)

    @field_validator("environment")
    @classmethod
    def _env(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be lower-case letters, digits and '-', starting with a letter")
        return v

    @model_validator(mode="after")
    def _references(self) -> EnvironmentSpec:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate service names: {', '.join(dupes)}")
        if not names:
            raise ValueError("services: at least one service is required")
        known = set(names)
        for i, svc in enumerate(self.services):
            for dep in svc.depends_on:
                if dep not in known:
                    raise ValueError(f"services[{i}].depends_on: unknown service {dep!r}")
        for section, checks in (("gates", self.gates), ("validation.checks", self.validation.checks)):
            cnames = [c.name for c in checks]
            if len(set(cnames)) != len(cnames):
                raise ValueError(f"{section}: check names must be unique")
            for i, chk in enumerate(checks):
                if chk.service is not None and chk.service not in known:
                    raise ValueError(f"{section}[{i}].service: unknown service {chk.service!r}")
                if chk.canary and section == "gates":
                    raise ValueError(f"gates[{i}].canary: only validation checks run at canary steps")
                if chk.canary and chk.service is not None and not self.service(chk.service).strategy.canary:
                    raise ValueError(f"{section}[{i}].canary: service {chk.service!r} has no canary strategy")
        for i, req in enumerate(self.warmup.requests):
            if req.service not in known:
                raise ValueError(f"warmup.requests[{i}].service: unknown service {req.service!r}")
        return self

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)
