"""Image gate: every container image `<repository>:<sha>` exists in its registry (OCI manifest HEAD)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers.checks.base import BaseCheck, CheckContext, CheckInput
from providers.clients.oci import ImageRef, ManifestInfo, RegistryClient, image_ref, parse_image, valid_tag
from providers.errors import ConfigError, ProviderError
from providers.models import CheckResult, Finding, Severity

Answer = ManifestInfo | ProviderError | None  # found, could not ask, never pushed


class ImageEntry(BaseModel):
    """One image repository, spelled out."""

    model_config = ConfigDict(extra="forbid")
    registry: str
    repository: str


class ImageExistsSettings(BaseModel):
    """Settings of the `image_exists` gate."""

    model_config = ConfigDict(extra="forbid")
    images: list[str | ImageEntry] = Field(
        default_factory=list,
        description="repositories (`host[:port]/path` or {registry, repository}); default: services' "
                    "settings.image",
    )
    tag: str = Field(default="{sha}", description="tag template: {sha}, {short_sha}")
    username: str | None = Field(default=None, description="registry user; the password is secrets.password")
    insecure_registries: list[str] = Field(default_factory=list, description="host:port reached over plain http")
    request_timeout_s: float = Field(default=15.0, gt=0)
    attempts: int = Field(default=4, ge=1, le=10)

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str) -> str:
        try:
            valid_tag(v.format(sha="0" * 40, short_sha="0" * 12))
        except (KeyError, IndexError, ValueError, ConfigError) as exc:
            raise ValueError("must be a tag template using {sha} or {short_sha}") from exc
        return v


def images_of(settings: ImageExistsSettings, ctx: CheckContext) -> list[ImageRef]:
    """The configured images, or those named by the services' `settings.image` (tag or digest stripped)."""
    out: list[ImageRef] = []
    for i, item in enumerate(settings.images):
        loc = ctx.location("settings", "images", i)
        out.append(parse_image(item, loc) if isinstance(item, str) else image_ref(item.registry, item.repository,
                                                                                  loc))
    if not out:
        for i, svc in enumerate(ctx.env.services):
            image: Any = svc.settings.get("image")
            if isinstance(image, str) and image:
                out.append(parse_image(_strip_tag(image), f"services[{i}].settings.image"))
    if not out:
        raise ConfigError("no images to check: list them in images (or set services' settings.image)",
                          ctx.location("settings", "images"))
    return list(dict.fromkeys(out))


def _strip_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


class ImageExistsGate(BaseCheck):
    """PASSED when every image's release tag resolves to a manifest; FAILED naming each image never pushed."""

    kind = "image_exists"

    def __init__(self, ctx: CheckContext, settings: ImageExistsSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.images = images_of(settings, ctx)
        user = ctx.secret("username")
        self.username = settings.username or (user.get_secret_value() if user else None)
        self.password = ctx.secret("password")
        self.http = ctx.http_client()

    def tag_for(self, inp: CheckInput) -> str:
        sha = inp.release.sha
        return valid_tag(self.settings.tag.format(sha=sha, short_sha=sha[:12]))

    async def measure(self, inp: CheckInput) -> CheckResult:
        tag = self.tag_for(inp)
        if self.http is not None:
            answers = await self._ask(self.http, tag)
        else:
            async with httpx.AsyncClient(timeout=self.settings.request_timeout_s) as http:
                answers = await self._ask(http, tag)
        missing = [Finding(message=f"image {img}:{tag} was never pushed", severity=Severity.CRITICAL,
                           location=f"{img}:{tag}", detail={"image": str(img), "tag": tag})
                   for img, ans in answers if ans is None]
        errors = [(img, ans) for img, ans in answers if isinstance(ans, ProviderError)]
        metrics = {"images": float(len(self.images)), "missing": float(len(missing)), "unknown": float(len(errors))}
        if missing:
            unknown = [Finding(message=f"image {img}:{tag} could not be checked: {exc}", severity=Severity.HIGH,
                               location=f"{img}:{tag}") for img, exc in errors]
            return self.failed(missing + unknown, metrics)
        if errors:
            raise errors[0][1]
        found = [Finding(message=f"image {img}:{tag} exists ({ans.digest or 'digest not given'})",
                         severity=Severity.INFO, location=f"{img}:{tag}",
                         detail={"digest": ans.digest, "media_type": ans.media_type})
                 for img, ans in answers if isinstance(ans, ManifestInfo)]
        return self.passed(f"{len(found)} image(s) tagged {tag} exist", found, metrics)

    async def _ask(self, http: httpx.AsyncClient, tag: str) -> list[tuple[ImageRef, Answer]]:
        client = RegistryClient(http, username=self.username, password=self.password,
                                insecure_registries=frozenset(self.settings.insecure_registries),
                                attempts=self.settings.attempts)

        async def one(img: ImageRef) -> tuple[ImageRef, Answer]:
            try:
                return img, await client.manifest(img, tag)
            except ProviderError as exc:
                return img, exc

        return list(await asyncio.gather(*(one(img) for img in self.images)))


def make_check(ctx: CheckContext) -> ImageExistsGate:
    """Factory registered as `image_exists`."""
    return ImageExistsGate(ctx, ctx.settings(ImageExistsSettings))
