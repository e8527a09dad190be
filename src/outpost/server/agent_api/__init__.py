"""The agent protocol, /api/agent/v1: internal, versioned, outbound-only from the agent's side."""
