"""Agent statuses (Terraform Cloud's definitions) and what counts towards a pool's agent-count."""

from __future__ import annotations

from enum import StrEnum


class AgentStatus(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"
    ERRORED = "errored"
    EXITED = "exited"


COUNTED: frozenset[AgentStatus] = frozenset({AgentStatus.IDLE, AgentStatus.BUSY, AgentStatus.UNKNOWN})
DELETABLE: frozenset[AgentStatus] = frozenset({AgentStatus.UNKNOWN, AgentStatus.ERRORED, AgentStatus.EXITED})
# Statuses from which an agent may still call in and be served.
LIVE: frozenset[AgentStatus] = frozenset({AgentStatus.IDLE, AgentStatus.BUSY, AgentStatus.UNKNOWN})


class AgentAction(StrEnum):
    """What the server tells an agent to do when it calls in."""

    CONTINUE = "continue"
    EXIT = "exit"
