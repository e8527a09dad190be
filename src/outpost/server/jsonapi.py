"""JSON:API encoding and decoding, in one place.

Bodies from real clients are lenient (pytfe puts whole models inside `attributes`, go-tfe sends
`{"data":{"type":""}}`, some actions send nothing): readers here take what they need, ignore the
rest, and refuse with a JSON:API error only what they cannot use.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from outpost.errors import BadRequest, Conflict, OutpostError, PayloadTooLarge, Unprocessable

MEDIA_TYPE = "application/vnd.api+json"
MAX_BODY = 1024 * 1024

Resource = dict[str, Any]


class JSONAPIResponse(JSONResponse):
    media_type = MEDIA_TYPE


def document(
    data: Resource | list[Resource] | None,
    *,
    status: int = 200,
    meta: dict[str, Any] | None = None,
    included: list[Resource] | None = None,
) -> Response:
    body: dict[str, Any] = {"data": data}
    if meta is not None:
        body["meta"] = meta
    if included:
        body["included"] = included
    return JSONAPIResponse(body, status_code=status)


def resource(
    type_: str,
    id_: str,
    attributes: dict[str, Any],
    relationships: dict[str, Any] | None = None,
    links: dict[str, Any] | None = None,
) -> Resource:
    out: Resource = {"id": id_, "type": type_, "attributes": attributes}
    if relationships is not None:
        out["relationships"] = relationships
    if links is not None:
        out["links"] = links
    return out


def to_one(type_: str, id_: str | None) -> dict[str, Any]:
    return {"data": None if id_ is None else {"type": type_, "id": id_}}


def to_many(type_: str, ids: list[str]) -> dict[str, Any]:
    return {"data": [{"type": type_, "id": i} for i in ids]}


def error_body(status: int, title: str, detail: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"status": str(status), "title": title, "detail": detail}
    if meta:
        err["meta"] = meta
    return {"errors": [err]}


def error_response(exc: OutpostError, meta: dict[str, Any] | None = None) -> Response:
    return JSONAPIResponse(error_body(exc.status, exc.title, exc.detail, meta), status_code=exc.status)


async def read_body(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The JSON object in the body; `{}` for an empty body."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is over {limit} bytes.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is over {limit} bytes.")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.", title="malformed JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", title="malformed JSON")
    return body


def data_of(body: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    data = body.get("data")
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise Unprocessable('The body needs a "data" object (JSON:API).', title="invalid document")
    return data


def attributes_of(body: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    data = data_of(body, required=required)
    attrs = data.get("attributes", {})
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise Unprocessable('"data.attributes" must be an object.', title="invalid document")
    return attrs


def relationship_id(body: dict[str, Any], name: str) -> str | None:
    rel = data_of(body, required=False).get("relationships", {}) or {}
    if not isinstance(rel, dict):
        raise Unprocessable('"data.relationships" must be an object.', title="invalid document")
    target = rel.get(name)
    if target is None:
        return None
    linkage = target.get("data") if isinstance(target, dict) else None
    if linkage is None:
        return None
    if not isinstance(linkage, dict) or not isinstance(linkage.get("id"), str):
        raise Unprocessable(f'Relationship "{name}" needs data with an id.', title="invalid document")
    return str(linkage["id"])


def relationship_ids(body: dict[str, Any], name: str) -> list[str] | None:
    rel = data_of(body, required=False).get("relationships", {}) or {}
    target = rel.get(name) if isinstance(rel, dict) else None
    if target is None:
        return None
    linkage = target.get("data") if isinstance(target, dict) else None
    if not isinstance(linkage, list) or not all(isinstance(x, dict) and isinstance(x.get("id"), str) for x in linkage):
        raise Unprocessable(f'Relationship "{name}" needs a list of {{type, id}}.', title="invalid document")
    return [str(x["id"]) for x in linkage]


def boolean(attrs: dict[str, Any], key: str, default: bool | None = None) -> bool | None:
    value = attrs.get(key, default)
    if value is None or isinstance(value, bool):
        return value
    raise Unprocessable(f'"{key}" must be true or false.', title="invalid attribute")


def string(attrs: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = attrs.get(key, default)
    if value is None or isinstance(value, str):
        return value
    raise Unprocessable(f'"{key}" must be a string.', title="invalid attribute")


def string_list(attrs: dict[str, Any], key: str) -> list[str]:
    value = attrs.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Unprocessable(f'"{key}" must be a list of strings.', title="invalid attribute")
    return list(value)


class Page:
    """`page[number]` and `page[size]`, with Terraform Cloud's defaults (1, 20; at most 100)."""

    def __init__(self, request: Request) -> None:
        def _int(name: str, default: int) -> int:
            raw = request.query_params.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"{name} must be a whole number.", title="invalid page") from None
            if value < 1:
                raise BadRequest(f"{name} must be 1 or more.", title="invalid page")
            return value

        self.number = _int("page[number]", 1)
        self.size = min(_int("page[size]", 20), 100)

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def meta(self, total: int) -> dict[str, Any]:
        pages = max(1, -(-total // self.size))
        return {
            "pagination": {
                "current-page": self.number,
                "page-size": self.size,
                "prev-page": self.number - 1 if self.number > 1 else None,
                "next-page": self.number + 1 if self.number < pages else None,
                "total-pages": pages,
                "total-count": total,
            }
        }


def expect_type(body: dict[str, Any], expected: str) -> None:
    """JSON:API: a resource object of another type is a conflict (409). An empty type is tolerated, as
    go-tfe sends `{"data":{"type":""}}` for actions."""
    data = body.get("data")
    if not isinstance(data, dict):
        return
    given = data.get("type")
    if given in (None, "") or given == expected:
        return
    if not isinstance(given, str):
        raise Unprocessable('"data.type" must be a string.', title="invalid document")
    raise Conflict(f'This endpoint takes a resource of type "{expected}", not "{given[:100]}".', title="wrong type")
