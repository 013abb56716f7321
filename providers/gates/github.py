"""What the GitHub gates share: the repository (owner/name), the token and an injected HTTP client."""

from __future__ import annotations

from providers.checks.base import BaseCheck, CheckContext
from providers.clients.github import GitHubSettings, repository_of


class GitHubGate(BaseCheck):
    """A gate reading one GitHub repository (owner/name from settings or the spec's source URL).

    FAILED means the release must not ship (findings say what is missing); ERROR means the gate could not
    measure (GitHub unreachable, refused credentials, exhausted rate limit): see BaseCheck.
    """

    def __init__(self, ctx: CheckContext, settings: GitHubSettings, *, uses_github: bool = True) -> None:
        super().__init__(ctx)
        self.gh_settings = settings
        self.repository = (
            repository_of(settings, ctx.env.source.repo, ctx.location("settings", "repository")) if uses_github
            else settings.repository or ""
        )
        self.token = ctx.secret("token")
        self.http = ctx.http_client()
