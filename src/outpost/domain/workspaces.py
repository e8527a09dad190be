"""Workspace rules: names, execution modes, terraform versions."""

from __future__ import annotations

import re
from enum import StrEnum

from outpost.errors import Unprocessable


class ExecutionMode(StrEnum):
    REMOTE = "remote"
    LOCAL = "local"
    AGENT = "agent"


# Terraform Cloud's rule, which pytfe also checks client-side.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,88}[A-Za-z0-9_]$|^[A-Za-z0-9_]$")
_ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$")

DEFAULT_TERRAFORM_VERSION = "1.0.3"
MIN_AGENT_VERSION = (0, 12, 0)


def check_workspace_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise Unprocessable(
            "A workspace name is 1 to 90 characters of letters, digits, '-' and '_', not starting or ending with '-'.",
            title="invalid workspace name",
        )
    return name


def check_organization_name(name: object) -> str:
    if not isinstance(name, str) or not _ORG_NAME.match(name):
        raise Unprocessable(
            "An organization name is 1 to 40 characters of letters, digits, '-' and '_', "
            "starting with a letter or digit.",
            title="invalid organization name",
        )
    return name


def parse_version(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(version)
    if not match:
        raise Unprocessable(
            f"terraform-version {version!r} is not a version like 1.0.3.", title="invalid terraform version"
        )
    return int(match[1]), int(match[2]), int(match[3])


def check_terraform_version(version: object) -> str:
    if not isinstance(version, str):
        raise Unprocessable("terraform-version must be a string like 1.0.3.", title="invalid terraform version")
    if version != "latest":
        parse_version(version)
    return version


def check_mode_and_version(mode: ExecutionMode, version: str) -> None:
    """Outpost agents execute both remote and agent runs, and need Terraform 0.12 or newer for them."""
    if mode == ExecutionMode.LOCAL or version == "latest":
        return
    if parse_version(version) < MIN_AGENT_VERSION:
        raise Unprocessable(
            f"Terraform {version} cannot use {mode.value} execution mode: agents run Terraform 0.12 "
            "or newer. Choose terraform-version 0.12.0 or later, or execution-mode local.",
            title="terraform version too old for agents",
        )
