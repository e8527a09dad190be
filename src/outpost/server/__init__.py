"""The control plane: the public API, the agent protocol, dispatch and the background monitor."""
