"""Request bodies in the OpenAPI description (`/api/openapi.json`).

Handlers read JSON:API documents leniently by hand (real clients send odd ones: see jsonapi.py), so
FastAPI cannot infer their shape; each route that takes a body declares it here, which documents the API
and lets a property-based fuzzer (schemathesis, tests/fuzz) generate bodies that reach the handlers.
"""

from __future__ import annotations

from typing import Any

_STR: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_STRS: dict[str, Any] = {"type": "array", "items": _STR}
_ACCESS: dict[str, Any] = {"type": "string", "enum": ["read", "plan", "write", "admin"]}


def _to_one(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"data": {"type": "object", "properties": {"type": {"const": kind}, "id": _STR}}},
    }


def _to_many(kind: str) -> dict[str, Any]:
    item = {"type": "object", "properties": {"type": {"const": kind}, "id": _STR}, "required": ["id"]}
    return {"type": "object", "properties": {"data": {"type": "array", "items": item}}}


ATTRIBUTES: dict[str, dict[str, Any]] = {
    "organizations": {"name": _STR, "email": _STR},
    "workspaces": {
        "name": _STR,
        "execution-mode": {"type": "string", "enum": ["remote", "local", "agent"]},
        "agent-pool-id": _STR,
        "terraform-version": _STR,
        "auto-apply": _BOOL,
        "description": _STR,
        "working-directory": _STR,
        "operations": _BOOL,
    },
    "vars": {
        "key": _STR,
        "value": _STR,
        "category": {"type": "string", "enum": ["terraform", "env"]},
        "hcl": _BOOL,
        "sensitive": _BOOL,
        "description": _STR,
    },
    "configuration-versions": {"auto-queue-runs": _BOOL, "speculative": _BOOL},
    "runs": {
        "message": _STR,
        "is-destroy": _BOOL,
        "refresh": _BOOL,
        "refresh-only": _BOOL,
        "plan-only": _BOOL,
        "auto-apply": _BOOL,
        "target-addrs": _STRS,
        "replace-addrs": _STRS,
    },
    "state-versions": {"serial": {"type": "integer"}, "md5": _STR, "lineage": _STR, "state": _STR, "force": _BOOL},
    "agent-pools": {"name": _STR, "organization-scoped": _BOOL},
    "authentication-tokens": {"description": _STR},
    "teams": {
        "name": _STR,
        "organization-access": {
            "type": "object",
            "properties": {"read-workspaces": _BOOL, "manage-workspaces": _BOOL, "manage-membership": _BOOL},
        },
    },
    "organization-memberships": {"email": _STR},
    "team-workspaces": {"access": _ACCESS},
    "actions": {"reason": _STR, "comment": _STR},
}

RELATIONSHIPS: dict[str, dict[str, Any]] = {
    "workspaces": {"agent-pool": _to_one("agent-pools")},
    "runs": {"workspace": _to_one("workspaces"), "configuration-version": _to_one("configuration-versions")},
    "state-versions": {"run": _to_one("runs")},
    "agent-pools": {"allowed-workspaces": _to_many("workspaces")},
    "organization-memberships": {"teams": _to_many("teams")},
    "team-workspaces": {"team": _to_one("teams"), "workspace": _to_one("workspaces")},
}


def body(kind: str, *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route taking a JSON:API document of `kind`."""
    data: dict[str, Any] = {
        "type": "object",
        "properties": {"type": {"type": "string"}, "attributes": {"type": "object", "properties": ATTRIBUTES[kind]}},
    }
    if kind in RELATIONSHIPS:
        data["properties"]["relationships"] = {"type": "object", "properties": RELATIONSHIPS[kind]}
    schema: dict[str, Any] = {"type": "object", "properties": {"data": data}}
    if kind == "actions":  # also the flat {"reason": ...} and {"comment": ...} forms real clients send
        schema["properties"].update(ATTRIBUTES["actions"])
    return {"requestBody": {"required": required, "content": {"application/vnd.api+json": {"schema": schema}}}}


def user_list() -> dict[str, Any]:
    """`openapi_extra` for team membership changes: a list of user linkages."""
    schema = _to_many("users")
    return {"requestBody": {"required": True, "content": {"application/vnd.api+json": {"schema": schema}}}}


# A configuration upload: the tar.gz itself.
ARCHIVE: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
