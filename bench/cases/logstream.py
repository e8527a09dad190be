"""Log streaming: a run whose apply writes a large output, read live through the log-read URL.

A recorder between terraform and the agent (a wrapper around the real binary, in a copy of the tools
directory) notes when each byte left terraform and keeps a copy of them; a reader polls the log-read URL
as the terraform CLI does. Delivery lag is the time from a byte leaving terraform to the reader having
it; the stored log must equal what terraform wrote, byte for byte."""

from __future__ import annotations

import bisect
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.cases.overhead import start_agent, wait_final, wait_idle
from bench.stats import summary_ms
from outpost.api_client import OutpostAPI

RECORDER = """import os, sys, time
record = sys.argv[1]
with open(record + ".bytes", "wb") as copy, open(record + ".times", "w") as times:
    total = 0
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view):]
        total += len(chunk)
        times.write("%.6f %d\\n" % (time.time(), total))
        copy.write(chunk)
"""

HEADER_END = b"Initializing plugins and modules...\n"


def recording_tools(tools: Path, dest: Path, record: Path) -> Path:
    shutil.copytree(tools, dest, symlinks=True, copy_function=os.link)
    binary = dest / "terraform" / "1.0.3" / "terraform"
    real = binary.with_name("terraform.real")
    binary.rename(real)
    (dest / "recorder.py").write_text(RECORDER)
    binary.write_text(
        "#!/bin/bash\nset -o pipefail\n"
        f'if [ "$1" = apply ]; then "{real}" "$@" 2>&1 | "{sys.executable}" "{dest / "recorder.py"}" "{record}"; '
        f'else exec "{real}" "$@"; fi\n'
    )
    binary.chmod(0o755)
    return dest


def configuration(megabytes: float) -> str:
    lines = int(megabytes * 1_000_000 / 150)
    return (
        'resource "null_resource" "spew" {\n  provisioner "local-exec" {\n'
        f'    command = "python3 -c \'import sys\\nfor i in range({lines}): sys.stdout.write(\\"%09d %s\\\\n\\" % (i, \\"x\\" * 128))\'"\n'
        "  }\n}\n"
    )


def run(url: str, org: str, token: str, tools: Path, work: Path, *, megabytes: float) -> dict[str, Any]:
    record = work / "record"
    tools = recording_tools(tools, work / "tools", record)
    api = OutpostAPI(url, token)
    pool = api.create_pool(org, "logs")
    _, pool_token = api.create_agent_token(pool["id"], "logs")
    agent = start_agent(url, pool_token, tools, work / "agent")
    try:
        wait_idle(api, pool["id"], agent)
        source = work / "config"
        source.mkdir()
        (source / "main.tf").write_text(configuration(megabytes))
        ws = api.create_workspace(org, "logs", execution_mode="agent", agent_pool_id=pool["id"], auto_apply=True)
        run_id = api.create_run(ws["id"], api.upload_configuration(ws["id"], source))["id"]
        deadline = time.monotonic() + 120
        while api.run(run_id)["attributes"]["status"] != "applying":
            if time.monotonic() > deadline:
                raise TimeoutError("the apply did not start")
            time.sleep(0.01)
        url_ = api.phase(api.run(run_id), "apply")["attributes"]["log-read-url"]
        received = bytearray()
        seen: list[tuple[float, int]] = []  # (when, bytes of the log held by the reader)
        with httpx.Client(timeout=30) as http:
            offset = 0
            while True:
                chunk = http.get(url_, params={"offset": offset, "limit": 8 * 2**20}).content
                now = time.time()
                offset += len(chunk)
                received += chunk
                if chunk:
                    seen.append((now, len(received)))
                if received.endswith(b"\x03"):
                    break
                if not chunk:
                    time.sleep(0.01)  # the CLI's reader backs off from 500 ms; this one polls harder
        status = wait_final(api, run_id)
    finally:
        agent.stop()
        api.close()

    body = bytes(received[1:-1])  # framing off
    header = body.index(HEADER_END) + len(HEADER_END)
    written = (record.parent / f"{record.name}.bytes").read_bytes()
    times = [line.split() for line in (record.parent / f"{record.name}.times").read_text().splitlines()]
    marks = [(float(t), int(n)) for t, n in times]
    # Each recorded write: the first reader sample holding all of it (+1: the STX byte).
    held = [n for _, n in seen]
    lags = []
    for at, end in marks:
        i = bisect.bisect_left(held, 1 + header + end)
        if i < len(seen):
            lags.append(seen[i][0] - at)
    span = marks[-1][0] - marks[0][0] if len(marks) > 1 else 0.0
    return {
        "status": status,
        "terraform_output_mb": round(len(written) / 1e6, 2),
        "terraform_wrote_for_s": round(span, 2),
        "delivery_lag": summary_ms(lags),
        "reader_throughput_mb_s": round(len(body) / 1e6 / (seen[-1][0] - seen[0][0]), 2) if len(seen) > 1 else None,
        "stored_equals_terraform_output": hashlib.sha256(body[header:]).hexdigest()
        == hashlib.sha256(written).hexdigest(),
        "sha256": hashlib.sha256(written).hexdigest(),
    }
