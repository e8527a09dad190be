"""The permission table against Terraform Cloud's access model, and the JSON permissions derived from it."""

from __future__ import annotations

import pytest

from outpost.domain.permissions import (
    RULES,
    RUN_PERMISSIONS,
    WORKSPACE_PERMISSIONS,
    Access,
    Action,
    OrgRight,
    Scope,
    implied_access,
    organization_allows,
    organization_permissions,
    rights_of,
    run_permissions,
    workspace_allows,
    workspace_permissions,
)


def test_every_action_has_exactly_one_rule() -> None:
    assert set(RULES) == set(Action)
    for action, rule in RULES.items():
        if rule.scope == Scope.WORKSPACE:
            assert rule.level is not None and rule.right is None, action
        elif rule.scope == Scope.ORGANIZATION:
            assert rule.right is not None and rule.level is None, action


@pytest.mark.parametrize(
    ("level", "allowed", "refused"),
    [
        (
            Access.READ,
            {Action.READ_WORKSPACE, Action.READ_RUNS, Action.READ_STATE},
            {Action.QUEUE_RUN, Action.LOCK_WORKSPACE},
        ),
        (Access.PLAN, {Action.QUEUE_RUN}, {Action.APPLY_RUN, Action.WRITE_VARIABLES, Action.QUEUE_DESTROY}),
        (
            Access.WRITE,
            {Action.APPLY_RUN, Action.LOCK_WORKSPACE, Action.WRITE_VARIABLES, Action.CREATE_STATE},
            {Action.UPDATE_WORKSPACE},
        ),
        (
            Access.ADMIN,
            {Action.UPDATE_WORKSPACE, Action.CHANGE_EXECUTION_MODE, Action.DELETE_WORKSPACE, Action.MANAGE_TEAM_ACCESS},
            set(),
        ),
    ],
)
def test_levels_follow_terraform_cloud(level: Access, allowed: set[Action], refused: set[Action]) -> None:
    for action in allowed:
        assert workspace_allows(level, action), (level, action)
    for action in refused:
        assert not workspace_allows(level, action), (level, action)


def test_queuing_and_applying_are_separate_permissions() -> None:
    assert RULES[Action.QUEUE_RUN].level < RULES[Action.APPLY_RUN].level  # type: ignore[operator]
    assert RULES[Action.CHANGE_EXECUTION_MODE].level == Access.ADMIN


def test_levels_are_cumulative() -> None:
    for action, rule in RULES.items():
        if rule.scope != Scope.WORKSPACE:
            continue
        granted = [workspace_allows(level, action) for level in Access]
        assert granted == sorted(granted), action  # once allowed at a level, allowed at every higher one


def test_owners_and_organization_rights() -> None:
    owner = rights_of(owner=True, team_flags=[])
    member = rights_of(owner=False, team_flags=[])
    manager = rights_of(owner=False, team_flags=[{"manage-workspaces": True}])
    assert organization_allows(owner, Action.MANAGE_AGENT_POOLS) and organization_allows(
        owner, Action.MANAGE_AGENT_TOKENS
    )
    assert not organization_allows(member, Action.MANAGE_AGENT_POOLS)
    assert not organization_allows(manager, Action.MANAGE_AGENT_TOKENS)
    assert organization_allows(manager, Action.CREATE_WORKSPACE) and not organization_allows(
        member, Action.CREATE_WORKSPACE
    )
    assert implied_access(owner) == implied_access(manager) == Access.ADMIN
    assert implied_access(rights_of(owner=False, team_flags=[{"read-workspaces": True}])) == Access.READ
    assert implied_access(member) == Access.NONE
    assert OrgRight.MEMBER in member


def test_json_permissions_tell_the_truth() -> None:
    # What the terraform CLI and pytfe read must be present, and follow the level.
    assert {"can-queue-run", "can-update", "can-queue-apply"} <= set(WORKSPACE_PERMISSIONS)
    assert set(RUN_PERMISSIONS) == {"can-apply", "can-cancel", "can-discard", "can-force-cancel", "can-force-execute"}
    assert workspace_permissions(Access.ADMIN) == dict.fromkeys(WORKSPACE_PERMISSIONS, True)
    plan = workspace_permissions(Access.PLAN)
    assert plan["can-queue-run"] and not plan["can-queue-apply"] and not plan["can-update"]
    assert run_permissions(Access.PLAN)["can-apply"] is False
    assert run_permissions(Access.WRITE)["can-apply"] is True
    assert organization_permissions(rights_of(owner=False, team_flags=[]))["can-update-agent-pools"] is False
    assert organization_permissions(rights_of(owner=True, team_flags=[]))["can-update-agent-pools"] is True


def test_access_parse() -> None:
    assert Access.parse("write") == Access.WRITE
    for bad in ("none", "custom", "WRITE", 3, None):
        with pytest.raises(ValueError):
            Access.parse(bad)
