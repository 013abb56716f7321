"""One exception root for aevon-deploy; vendor errors are translated once, at the provider boundary."""

from __future__ import annotations


class AevonError(Exception):
    """Root of every error aevon-deploy raises on purpose. Messages never contain secrets."""


class ConfigError(AevonError):
    """A spec, a setting or an argument is wrong; raised before any side effect.

    `location` names the file and the field path (for example ``deployments/dev.yaml: services[0].provider``).
    """

    def __init__(self, message: str, location: str | None = None) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class SecretMissing(ConfigError):
    """A secret the spec needs is not set anywhere we look."""


class ProviderError(AevonError):
    """A provider (vendor API, CLI, database) failed; `provider` and `resource` name what failed."""

    def __init__(self, message: str, *, provider: str, resource: str | None = None) -> None:
        self.provider = provider
        self.resource = resource
        where = f"{provider}" + (f" {resource}" if resource else "")
        super().__init__(f"{where}: {message}")


class TransientError(ProviderError):
    """Worth retrying: 5xx, 429, timeouts, connection resets, a database that is restarting.

    `retry_after` is the vendor's requested wait in seconds, when it gave one.
    """

    def __init__(
        self, message: str, *, provider: str, resource: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, provider=provider, resource=resource)


class PermanentError(ProviderError):
    """Not worth retrying: 4xx (auth, not found, validation), a failed build, a refused migration."""


class DeployFailed(PermanentError):
    """A service deployment reached a failed state at the vendor (or never became ready in time)."""


class LockTimeout(AevonError):
    """The environment lock could not be taken in time."""


def is_transient(exc: BaseException) -> bool:
    """True when `exc` is worth retrying (used as the tasks' retry condition)."""
    return isinstance(exc, TransientError)
