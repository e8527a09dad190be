"""The agent's exit codes (documented in the README): a supervisor can tell why an agent stopped."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # --single finished its job, or a graceful shutdown
    ERROR = 1  # an unexpected error
    USAGE = 2  # bad flags or configuration
    TOKEN_REJECTED = 3  # the pool token was refused at registration
    TOKEN_REVOKED = 4  # the pool token was revoked while the agent ran
    AGENT_ERRORED = 5  # the server declared this agent errored (it stopped reporting) and told it to exit
    PROTOCOL_MISMATCH = 6  # the server speaks another agent protocol: install the server's version
    SESSION_ENDED = 7  # the server no longer knows this agent (deleted, or already exited)
    FORCED = 130  # a third signal: stopped at once


REASONS: dict[str, ExitCode] = {
    "token_revoked": ExitCode.TOKEN_REVOKED,
    "agent_errored": ExitCode.AGENT_ERRORED,
    "agent_exited": ExitCode.SESSION_ENDED,
    "protocol_mismatch": ExitCode.PROTOCOL_MISMATCH,
}
