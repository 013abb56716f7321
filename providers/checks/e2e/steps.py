"""E2E user flows declared as steps (goto, fill, click, select, expect_*) and their runner on a Playwright page."""

from __future__ import annotations

import asyncio
import fnmatch
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page, Response
from playwright.async_api import TimeoutError as PlaywrightTimeout
from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag, field_validator, model_validator

_POLL_S = 0.1


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float | None = Field(default=None, gt=0, description="this step's wait (default: the flow's)")


class GotoStep(_Step):
    goto: str = Field(description="a path on the service's URL (or an absolute URL)")
    status: list[int] | None = Field(default=None, description="accepted statuses (default: any below 400)")


class FillStep(_Step):
    fill: str = Field(description="selector of an input")
    value: str | None = None
    value_secret: str | None = Field(default=None, description="key of the check's `secrets`: never logged")

    @model_validator(mode="after")
    def _one_value(self) -> FillStep:
        if (self.value is None) == (self.value_secret is None):
            raise ValueError("give exactly one of value, value_secret")
        return self


class ClickStep(_Step):
    click: str = Field(description="selector of the element to click")


class SelectStep(_Step):
    select: str = Field(description="selector of a <select>")
    value: str | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> SelectStep:
        if (self.value is None) == (self.label is None):
            raise ValueError("give exactly one of value, label")
        return self


class ExpectTextStep(_Step):
    expect_text: str = Field(description="selector whose text must contain (or equal) `text`")
    text: str
    exact: bool = False


class ExpectUrlStep(_Step):
    expect_url: str = Field(description="regex the page URL (relative to the service's URL) must fully match")


class ExpectResponseStatusStep(_Step):
    expect_response_status: str = Field(description="URL path (glob) of a response the page received")
    method: str = "GET"
    status: list[int]

    @field_validator("status", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v


ACTIONS = ("goto", "fill", "click", "select", "expect_text", "expect_url", "expect_response_status")


def _action(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((a for a in ACTIONS if a in value), None)
    return next((a for a in ACTIONS if hasattr(value, a)), None)


Step = Annotated[
    Annotated[GotoStep, Tag("goto")] | Annotated[FillStep, Tag("fill")] | Annotated[ClickStep, Tag("click")]
    | Annotated[SelectStep, Tag("select")] | Annotated[ExpectTextStep, Tag("expect_text")]
    | Annotated[ExpectUrlStep, Tag("expect_url")] | Annotated[ExpectResponseStatusStep, Tag("expect_response_status")],
    Discriminator(_action, custom_error_type="step", custom_error_message="a step needs one of: " + ", ".join(ACTIONS)),
]


class FlowSpec(BaseModel):
    """One critical user flow: a name and its steps, run in order on the check's page."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=80)
    steps: list[Step] = Field(min_length=1)
    step_timeout_s: float | None = Field(default=None, gt=0)

    @property
    def secret_keys(self) -> set[str]:
        return {s.value_secret for s in self.steps if isinstance(s, FillStep) and s.value_secret}


def describe(step: _Step) -> str:
    """A step as one line for messages (a secret value is never shown)."""
    match step:
        case GotoStep():
            return f"goto {step.goto}"
        case FillStep():
            what = f"secret {step.value_secret}" if step.value_secret else repr(step.value)
            return f"fill {step.fill} with {what}"
        case ClickStep():
            return f"click {step.click}"
        case SelectStep():
            return f"select {step.select} " + (f"label {step.label!r}" if step.label is not None else f"{step.value!r}")
        case ExpectTextStep():
            return f"expect_text {step.expect_text} {'==' if step.exact else 'contains'} {step.text!r}"
        case ExpectUrlStep():
            return f"expect_url {step.expect_url}"
        case ExpectResponseStatusStep():
            return f"expect_response_status {step.method} {step.expect_response_status}"
    return type(step).__name__


class StepFailed(Exception):
    """A step did not hold: the flow FAILED. Carries what was expected and what the page showed."""

    def __init__(self, index: int, step: str, expected: str, seen: str) -> None:
        super().__init__(f"step {index} ({step}): expected {expected}; seen {seen}")
        self.index, self.step, self.expected, self.seen = index, step, expected, seen


class Unreachable(Exception):
    """The page could not be loaded at all (connection refused, DNS, browser gone): could not measure."""


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _either(codes: list[int]) -> str:
    return " or ".join(map(str, codes))


class FlowRunner:
    """Runs flows on one page; records every response so that expect_response_status can look back."""

    def __init__(self, page: Page, base_url: str, secrets: dict[str, SecretStr], nonce: str, timeout_s: float) -> None:
        self.page, self.base, self.secrets = page, base_url.rstrip("/"), secrets
        self.nonce, self.timeout_s = nonce, timeout_s
        self.responses: list[tuple[str, str, int]] = []  # (method, path, status) in arrival order
        self._used: set[int] = set()
        page.on("response", self._record)

    def _record(self, response: Response) -> None:
        self.responses.append((response.request.method, urlsplit(response.url).path, response.status))

    def _t(self, text: str) -> str:
        return text.replace("{nonce}", self.nonce)

    async def run(self, flow: FlowSpec) -> None:
        """Run each step; raise StepFailed (1-based step index) or Unreachable."""
        for i, step in enumerate(flow.steps, start=1):
            timeout = step.timeout_s or flow.step_timeout_s or self.timeout_s
            try:
                await self._step(i, step, timeout)
            except PlaywrightTimeout as exc:
                raise StepFailed(i, describe(step), *await self._timeout_detail(step)) from exc
            except PlaywrightError as exc:
                first_line = _short(exc.message.splitlines()[0] if exc.message else type(exc).__name__)
                raise Unreachable(f"step {i} ({describe(step)}): {first_line}") from exc

    async def _step(self, i: int, step: _Step, timeout: float) -> None:
        ms = timeout * 1000
        match step:
            case GotoStep():
                url = step.goto if "://" in step.goto else self.base + "/" + step.goto.lstrip("/")
                resp = await self.page.goto(url, timeout=ms)
                if resp is not None:  # None: same-document navigation (a #fragment)
                    ok = resp.status in step.status if step.status else resp.status < 400
                    if not ok:
                        want = _either(step.status) if step.status else "below 400"
                        raise StepFailed(i, describe(step), f"status {want}", f"status {resp.status}")
            case FillStep():
                await self.page.locator(self._t(step.fill)).first.fill(self._value(step), timeout=ms)
            case ClickStep():
                await self.page.locator(self._t(step.click)).first.click(timeout=ms)
            case SelectStep():
                loc = self.page.locator(self._t(step.select)).first
                if step.label is not None:
                    await loc.select_option(label=self._t(step.label), timeout=ms)
                else:
                    await loc.select_option(value=self._t(step.value or ""), timeout=ms)
            case ExpectTextStep():
                await self._expect_text(i, step, timeout)
            case ExpectUrlStep():
                await self._expect_url(i, step, timeout)
            case ExpectResponseStatusStep():
                await self._expect_response(i, step, timeout)

    def _value(self, step: FillStep) -> str:
        if step.value_secret is not None:
            return self.secrets[step.value_secret].get_secret_value()
        return self._t(step.value or "")

    async def _texts(self, loc: Locator) -> str | None:
        if await loc.count() == 0:
            return None
        return " ".join(await loc.all_inner_texts())

    async def _expect_text(self, i: int, step: ExpectTextStep, timeout: float) -> None:
        want, loc = self._t(step.text), self.page.locator(self._t(step.expect_text))
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = await self._texts(loc)
            if got is not None and (got.strip() == want if step.exact else want in got):
                return
            if asyncio.get_running_loop().time() >= deadline:
                how = "text equal to" if step.exact else "text containing"
                seen = "no element matches" if got is None else f"text {_short(got)!r}"
                raise StepFailed(i, describe(step), f"{how} {want!r} within {timeout:g}s", seen)
            await asyncio.sleep(_POLL_S)

    def _relative_url(self) -> str:
        url = self.page.url
        return url[len(self.base):] or "/" if url.startswith(self.base) else url

    async def _expect_url(self, i: int, step: ExpectUrlStep, timeout: float) -> None:
        pattern = re.compile(self._t(step.expect_url))
        deadline = asyncio.get_running_loop().time() + timeout
        while not pattern.fullmatch(self._relative_url()):
            if asyncio.get_running_loop().time() >= deadline:
                raise StepFailed(i, describe(step), f"URL matching {pattern.pattern!r} within {timeout:g}s",
                                 repr(self._relative_url()))
            await asyncio.sleep(_POLL_S)

    async def _expect_response(self, i: int, step: ExpectResponseStatusStep, timeout: float) -> None:
        pattern, method = self._t(step.expect_response_status), step.method.upper()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for n, (m, path, status) in enumerate(self.responses):
                if n not in self._used and m == method and fnmatch.fnmatchcase(path, pattern):
                    self._used.add(n)
                    if status not in step.status:
                        raise StepFailed(i, describe(step), f"status {_either(step.status)}", f"status {status}")
                    return
            if asyncio.get_running_loop().time() >= deadline:
                raise StepFailed(i, describe(step), f"a {method} {pattern} response with status {_either(step.status)} "
                                 f"within {timeout:g}s", f"no such response among the page's {len(self.responses)}")
            await asyncio.sleep(_POLL_S)

    async def _timeout_detail(self, step: _Step) -> tuple[str, str]:
        """(expected, seen) for a Playwright action that timed out."""
        selector = getattr(step, "fill", None) or getattr(step, "click", None) or getattr(step, "select", None)
        if selector is None:
            return "the page to load in time", f"still loading {self._relative_url()!r}"
        selector = self._t(selector)
        loc = self.page.locator(selector)
        count = await loc.count()
        if count == 0:
            return f"an element matching {selector}", "no element matches"
        first = loc.first
        if isinstance(step, SelectStep):
            options = [_short(o, 40) for o in await first.locator("option").all_inner_texts()]
            return f"an option {step.label or step.value!r}", f"options {options[:10]}"
        state = [word for word, yes in (("hidden", not await first.is_visible()),
                                        ("disabled", not await first.is_enabled())) if yes]
        seen = f"{count} element(s), the first {', '.join(state) or 'ready'}"
        return f"a visible, enabled element matching {selector}", seen
