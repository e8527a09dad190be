"""The per-agent provider plugin cache with concurrent jobs, its lock, and a provider network mirror over
HTTPS with a private CA (real agent processes, real terraform)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import ssl
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from outpost.agent.providers import LOCK_NAME
from outpost.api_client import OutpostAPI
from tests.conftest import EXAMPLES
from tests.support.httpfiles import FileServer
from tests.support.processes import OUTPOST, Proc, Server, clean_env, wait_until

pytestmark = pytest.mark.e2e

PROVIDER = ("registry.terraform.io", "hashicorp", "null", "2.1.2", "linux_amd64")


def _pool(api: OutpostAPI, org: str) -> tuple[str, str]:
    pool = api.create_pool(org, "cache")
    return pool["id"], api.create_agent_token(pool["id"], "cache")[1]


def _queue(api: OutpostAPI, org: str, pool_id: str, name: str, **attrs: object) -> str:
    ws = api.create_workspace(org, name, execution_mode="agent", agent_pool_id=pool_id, **attrs)
    cv = api.upload_configuration(ws["id"], EXAMPLES / "hello")
    return str(api.create_run(ws["id"], cv)["id"])


def test_concurrent_jobs_share_one_provider_cache(api: OutpostAPI, org: tuple[str, str], start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool_id, token = _pool(api, org[0])
    cache = tmp_path / "shared-cache"
    start(token, "--concurrency", "3", "--cache-dir", str(cache))
    runs = [_queue(api, org[0], pool_id, f"cached-{i}", auto_apply=True) for i in range(3)]
    for run_id in runs:
        run = api.wait_for_run(run_id, {"applied", "errored"}, timeout=240)
        assert run["attributes"]["status"] == "applied", api.read_log(run, "plan") + api.read_log(run, "apply")
    cached = cache / "providers" / Path(*PROVIDER)
    assert [p.name for p in cached.iterdir()] == ["terraform-provider-null_v2.1.2_x4"]
    assert os.access(cached / "terraform-provider-null_v2.1.2_x4", os.X_OK)


def test_terraform_init_waits_for_the_cache_lock(api: OutpostAPI, org: tuple[str, str], start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Held by someone else (here: the test, as another agent sharing the cache would), init waits; a job
    canceled while it waits stops at once."""
    pool_id, token = _pool(api, org[0])
    cache = tmp_path / "cache"
    start(token, "--cache-dir", str(cache), "--concurrency", "2")
    lock_file = cache / "providers" / LOCK_NAME
    lock_file.parent.mkdir(parents=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        waiting, canceled = _queue(api, org[0], pool_id, "waits"), _queue(api, org[0], pool_id, "gives-up")
        for run_id in (waiting, canceled):
            run = api.wait_for_run(run_id, {"planning"}, timeout=60)
            wait_until(
                lambda run=run: "Waiting for the provider plugin cache" in api.read_log(run, "plan"),
                60,
                what="the wait message",
            )
        api.action(canceled, "cancel")
        run = api.wait_for_run(canceled, {"canceled", "errored", "planned"}, timeout=60)
        assert run["attributes"]["status"] == "canceled"
        assert api.run(waiting)["attributes"]["status"] == "planning"
        assert not (cache / "providers" / "registry.terraform.io").exists(), "nothing was installed meanwhile"
    finally:
        os.close(fd)
    run = api.wait_for_run(waiting, {"planned", "errored"}, timeout=120)
    assert run["attributes"]["status"] == "planned", api.read_log(run, "plan")
    assert (cache / "providers" / Path(*PROVIDER)).is_dir()


@pytest.fixture
def network_mirror(tmp_path: Path, tools_dir: Path) -> Iterator[tuple[FileServer, trustme.CA]]:
    """The null provider in the provider network mirror protocol, over HTTPS with a private CA."""
    root = tmp_path / "mirror"
    folder = root.joinpath(*PROVIDER[:3])
    folder.mkdir(parents=True)
    binary = next((tools_dir / "providers").joinpath(*PROVIDER).iterdir())
    archive = folder / "terraform-provider-null_2.1.2_linux_amd64.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(binary, binary.name)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (folder / "index.json").write_text(json.dumps({"versions": {"2.1.2": {}}}))
    (folder / "2.1.2.json").write_text(
        json.dumps({"archives": {"linux_amd64": {"url": archive.name, "hashes": [f"zh:{digest}"]}}})
    )
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with FileServer(root, context) as server:
        yield server, ca


def _agent(server: Server, token: str, tools_dir: Path, data_dir: Path, *args: str) -> Proc:
    return Proc(
        [
            *OUTPOST, "agent", "--address", server.url, "--data-dir", str(data_dir),
            "--terraform-dir", str(tools_dir / "terraform"), *args,
        ],
        data_dir.with_suffix(".log"),
        env=clean_env(OUTPOST_AGENT_TOKEN=token),
    ).start()  # fmt: skip


def test_network_mirror_over_https_trusted_through_ca_cert(  # type: ignore[no-untyped-def]
    api: OutpostAPI, org: tuple[str, str], server: Server, tools_dir: Path, tmp_path: Path, network_mirror, agents
) -> None:
    mirror, ca = network_mirror
    ca_file = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    pool_id, token = _pool(api, org[0])
    url = mirror.url + "/"

    # Without --ca-cert, terraform does not trust the mirror: init fails, and says why.
    untrusting = _agent(server, token, tools_dir, tmp_path / "untrusting", "--provider-network-mirror", url)
    agents.append(untrusting)
    run = api.wait_for_run(_queue(api, org[0], pool_id, "untrusted"), {"planned", "errored"}, timeout=120)
    assert run["attributes"]["status"] == "errored"
    assert "certificate" in api.read_log(run, "plan")
    assert untrusting.stop() == 0

    trusting = _agent(
        server, token, tools_dir, tmp_path / "trusting", "--provider-network-mirror", url, "--ca-cert", str(ca_file)
    )
    agents.append(trusting)
    run = api.wait_for_run(_queue(api, org[0], pool_id, "trusted"), {"planned", "errored"}, timeout=120)
    assert run["attributes"]["status"] == "planned", api.read_log(run, "plan")
    assert mirror.count("/registry.terraform.io/hashicorp/null/index.json") >= 1
    assert mirror.count("/terraform-provider-null_2.1.2_linux_amd64.zip") >= 1
    bundle = (tmp_path / "trusting" / "cache" / "ca-bundle.pem").read_text()
    assert ca_file.read_text().strip() in bundle and bundle.count("BEGIN CERTIFICATE") > 1
