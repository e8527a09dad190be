"""The one exception tree of Outpost.

Every error the server turns into an HTTP answer derives from `OutpostError`; its `status` is the HTTP
status and its docstring the default title. The agent's own errors live under `AgentError`.
"""

from __future__ import annotations


class OutpostError(Exception):
    """Outpost error."""

    status: int = 500

    def __init__(self, detail: str | None = None, *, title: str | None = None) -> None:
        self.title = title or (self.__doc__ or self.__class__.__name__).strip().splitlines()[0].rstrip(".")
        self.detail = detail or self.title
        super().__init__(self.detail)


class BadRequest(OutpostError):
    """Bad request."""

    status = 400


class Unauthorized(OutpostError):
    """Unauthorized."""

    status = 401


class Forbidden(OutpostError):
    """Forbidden."""

    status = 403


class NotFound(OutpostError):
    """Not found."""

    status = 404


class Conflict(OutpostError):
    """Conflict."""

    status = 409


class Gone(OutpostError):
    """Gone."""

    status = 410


class PreconditionFailed(OutpostError):
    """Precondition failed."""

    status = 412


class PayloadTooLarge(OutpostError):
    """Payload too large."""

    status = 413


class RangeNotSatisfiable(OutpostError):
    """Range not satisfiable."""

    status = 416


class Unprocessable(OutpostError):
    """Unprocessable entity."""

    status = 422


class Contention(OutpostError):
    """Database busy."""

    status = 503


class InvalidTransition(Conflict):
    """Transition not allowed."""


class ConfigError(OutpostError):
    """Invalid configuration."""

    status = 500


class AgentError(Exception):
    """Agent error."""


class AgentFatal(AgentError):
    """The server refused the agent for good (bad token, revoked, told to exit)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Retryable(AgentError):
    """A request failed in a way worth retrying (connection error, 429, 5xx)."""
