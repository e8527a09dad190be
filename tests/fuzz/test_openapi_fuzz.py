"""A property-based fuzz run of the published OpenAPI description (schemathesis): no request, however
odd, gets a 5xx. The server is real (HTTP over a socket); requests carry an owner's token and real ids
in their paths, so that generated bodies and query strings reach the handlers instead of stopping at
"not found". The budget is fixed (EXAMPLES per operation) and so is the seed (derandomized), so a run is
the same in CI as here, and takes about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from outpost.config import ServerConfig
from outpost.server.app import create_app
from tests.support.processes import Server
from tests.support.world import World, build

pytestmark = pytest.mark.integration

EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzz_world(server: Server) -> Iterator[World]:
    world = build(server.url, server.db_url)
    yield world
    world.close()


# The description the server publishes at /api/openapi.json, taken from the same application in-process
# (schemathesis's lazy fixture loading does not work with pytest 9); test_description_is_served checks
# that the running server serves exactly this.
DESCRIPTION = create_app(ServerConfig()).openapi()
schema = schemathesis.openapi.from_dict(DESCRIPTION)


def test_description_is_served(server: Server) -> None:
    assert httpx.get(f"{server.url}/api/openapi.json").json() == DESCRIPTION


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_server_error(case: Any, fuzz_world: World) -> None:
    if case.method != "DELETE":  # deletes keep their random ids: the world must outlive the run
        known = {k: fuzz_world.ids[k] for k in case.path_parameters or {} if k in fuzz_world.ids}
        if "user_id" in (case.path_parameters or {}):
            known["user_id"] = fuzz_world.user_ids["owner"]
        case.path_parameters = {**(case.path_parameters or {}), **known}
    assert fuzz_world.owner is not None
    response = case.call(
        base_url=fuzz_world.url, headers={"Authorization": f"Bearer {fuzz_world.owner.token}"}, timeout=30
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/vnd.api+json"):
        error = response.json()["errors"][0]
        assert error["status"] == str(response.status_code) and error["title"] and error["detail"]
