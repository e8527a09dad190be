"""Outpost: a self-hosted control plane and pull-based agents for Terraform runs."""

__version__ = "0.1.0"

# The agent protocol version. The server accepts agents speaking any version in
# SUPPORTED_AGENT_PROTOCOLS; registration tells an agent outside it which version to install.
AGENT_PROTOCOL_VERSION = 1
SUPPORTED_AGENT_PROTOCOLS = frozenset({1})
