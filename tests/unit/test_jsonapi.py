"""JSON:API readers: pagination, relationships, attributes and typed attribute values."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import Request

from outpost.errors import BadRequest, Unprocessable
from outpost.server import jsonapi
from outpost.server.jsonapi import Page


def request(**params: str) -> Request:
    query = urlencode({f"page[{k}]": v for k, v in params.items()}).encode()
    return Request({"type": "http", "method": "GET", "path": "/api/v2/x", "query_string": query, "headers": []})


# --- pagination ------------------------------------------------------------------------------------


def test_page_defaults() -> None:
    page = Page(request())
    assert (page.number, page.size, page.offset) == (1, 20, 0)
    empty = Page(request(number="", size=""))
    assert (empty.number, empty.size) == (1, 20)


@pytest.mark.parametrize(
    ("number", "size", "expected"),
    [
        ("1", "1", (1, 1, 0)),
        ("3", "10", (3, 10, 20)),
        ("2", "100", (2, 100, 100)),
        ("2", "101", (2, 100, 100)),
        ("1", "100000", (1, 100, 0)),
        ("007", "05", (7, 5, 30)),
    ],
)
def test_page_bounds(number: str, size: str, expected: tuple[int, int, int]) -> None:
    page = Page(request(number=number, size=size))
    assert (page.number, page.size, page.offset) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"number": "0"},
        {"number": "-1"},
        {"size": "0"},
        {"size": "-20"},
        {"number": "abc"},
        {"size": "1.5"},
        {"number": "1e3"},
        {"size": "twenty"},
    ],
)
def test_invalid_page_is_a_bad_request(params: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as caught:
        Page(request(**params))
    assert caught.value.status == 400
    assert "page[" in caught.value.detail


def test_page_meta() -> None:
    page = Page(request(number="2", size="10"))
    assert page.meta(35)["pagination"] == {
        "current-page": 2,
        "page-size": 10,
        "prev-page": 1,
        "next-page": 3,
        "total-pages": 4,
        "total-count": 35,
    }
    last = Page(request(number="4", size="10")).meta(40)["pagination"]
    assert (last["next-page"], last["total-pages"]) == (None, 4)
    empty = Page(request()).meta(0)["pagination"]
    assert (empty["prev-page"], empty["next-page"], empty["total-pages"]) == (None, None, 1)


# --- relationships ---------------------------------------------------------------------------------


def body(relationships: Any) -> dict[str, Any]:
    return {"data": {"type": "runs", "relationships": relationships}}


def test_relationship_id_reads_the_linkage() -> None:
    doc = body({"workspace": {"data": {"type": "workspaces", "id": "ws-1"}}})
    assert jsonapi.relationship_id(doc, "workspace") == "ws-1"
    assert jsonapi.relationship_id(doc, "configuration-version") is None
    assert jsonapi.relationship_id(body({"workspace": {"data": None}}), "workspace") is None
    assert jsonapi.relationship_id({}, "workspace") is None, "no data at all: nothing related"
    assert jsonapi.relationship_id({"data": {"type": "runs"}}, "workspace") is None
    assert jsonapi.relationship_id(body(None), "workspace") is None


@pytest.mark.parametrize(
    "doc",
    [
        body([{"workspace": {"data": {"id": "ws-1"}}}]),
        body("workspace"),
        body({"workspace": {"data": {"type": "workspaces"}}}),
        body({"workspace": {"data": {"type": "workspaces", "id": 12}}}),
        body({"workspace": {"data": [{"type": "workspaces", "id": "ws-1"}]}}),
        body({"workspace": {"data": "ws-1"}}),
        {"data": "runs"},
        {"data": ["runs"]},
    ],
)
def test_relationship_id_errors(doc: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable) as caught:
        jsonapi.relationship_id(doc, "workspace")
    assert caught.value.status == 422


def test_relationship_ids_reads_the_list() -> None:
    doc = body({"workspaces": {"data": [{"type": "workspaces", "id": "ws-1"}, {"type": "workspaces", "id": "ws-2"}]}})
    assert jsonapi.relationship_ids(doc, "workspaces") == ["ws-1", "ws-2"]
    assert jsonapi.relationship_ids(body({"workspaces": {"data": []}}), "workspaces") == []
    assert jsonapi.relationship_ids(doc, "teams") is None
    assert jsonapi.relationship_ids({}, "workspaces") is None


@pytest.mark.parametrize(
    "linkage",
    [
        {"data": None},
        {"data": {"type": "workspaces", "id": "ws-1"}},
        {"data": ["ws-1"]},
        {"data": [{"type": "workspaces"}]},
        {"data": [{"type": "workspaces", "id": "ws-1"}, {"type": "workspaces", "id": None}]},
        {},
        "ws-1",
    ],
)
def test_relationship_ids_errors(linkage: Any) -> None:
    with pytest.raises(Unprocessable):
        jsonapi.relationship_ids(body({"workspaces": linkage}), "workspaces")


# --- attributes ------------------------------------------------------------------------------------


def test_attributes_of() -> None:
    assert jsonapi.attributes_of({"data": {"type": "runs", "attributes": {"message": "hi"}}}) == {"message": "hi"}
    assert jsonapi.attributes_of({"data": {"type": "runs"}}) == {}
    assert jsonapi.attributes_of({"data": {"type": "runs", "attributes": None}}) == {}
    assert jsonapi.attributes_of({}, required=False) == {}
    assert jsonapi.attributes_of({"data": None}, required=False) == {}


@pytest.mark.parametrize(
    ("doc", "required"),
    [
        ({}, True),
        ({"data": None}, True),
        ({"data": "runs"}, True),
        ({"data": []}, False),
        ({"data": {"attributes": ["message"]}}, True),
        ({"data": {"attributes": "message"}}, False),
    ],
)
def test_attributes_of_errors(doc: dict[str, Any], required: bool) -> None:
    with pytest.raises(Unprocessable) as caught:
        jsonapi.attributes_of(doc, required=required)
    assert caught.value.status == 422


# --- typed values ----------------------------------------------------------------------------------


def test_boolean() -> None:
    attrs = {"yes": True, "no": False, "null": None}
    assert jsonapi.boolean(attrs, "yes") is True
    assert jsonapi.boolean(attrs, "no") is False
    assert jsonapi.boolean(attrs, "null", default=True) is None, "an explicit null is kept"
    assert jsonapi.boolean(attrs, "missing") is None
    assert jsonapi.boolean(attrs, "missing", default=False) is False


@pytest.mark.parametrize("value", ["true", "false", 1, 0, [], {}, "yes"])
def test_boolean_refuses_non_booleans(value: Any) -> None:
    with pytest.raises(Unprocessable) as caught:
        jsonapi.boolean({"auto-apply": value}, "auto-apply")
    assert '"auto-apply"' in caught.value.detail


def test_string() -> None:
    attrs = {"name": "prod", "empty": "", "null": None}
    assert jsonapi.string(attrs, "name") == "prod"
    assert jsonapi.string(attrs, "empty", default="x") == ""
    assert jsonapi.string(attrs, "null", default="x") is None
    assert jsonapi.string(attrs, "missing") is None
    assert jsonapi.string(attrs, "missing", default="d") == "d"


@pytest.mark.parametrize("value", [1, 1.5, True, ["a"], {"a": "b"}])
def test_string_refuses_non_strings(value: Any) -> None:
    with pytest.raises(Unprocessable) as caught:
        jsonapi.string({"name": value}, "name")
    assert '"name"' in caught.value.detail


def test_string_list() -> None:
    assert jsonapi.string_list({"t": ["a", "b"]}, "t") == ["a", "b"]
    assert jsonapi.string_list({"t": None}, "t") == []
    assert jsonapi.string_list({}, "t") == []
    for bad in (["a", 1], "a", {"a": 1}, [None]):
        with pytest.raises(Unprocessable):
            jsonapi.string_list({"t": bad}, "t")
