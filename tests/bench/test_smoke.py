"""The benchmarks keep working: a quick run of every case (tiny sizes; the figures mean nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_run_completes_with_consistent_figures(tools_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--tools-dir", str(tools_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "dispatch p99" in done.stdout  # the table was printed
    figures = json.loads(out.read_text())
    cases = figures["cases"]
    assert set(cases) == {"dispatch", "ramp", "throughput", "capacity", "overhead", "logs", "memory"}
    assert figures["machine"]["cores"] >= 1
    for count, case in cases["dispatch"].items():
        assert case["from_creation_answer"]["n"] == 20 and case["errors"] == 0, count
        assert case["ping"]["p50_ms"] > 0
    assert cases["ramp"]["errors"] == 0 and cases["ramp"]["all_started_s"]["median"] > 0
    sqlite = cases["throughput"]["sqlite_one_process"]
    assert sqlite["each_job_once"] is True and sqlite["jobs_per_second"] > 0
    assert cases["capacity"]["100"]["errors"] == 0 and cases["capacity"]["100"]["server_rss_mb"] > 0
    assert cases["overhead"]["2"]["ratio"] > 0
    assert cases["logs"]["status"] == "applied" and cases["logs"]["stored_equals_terraform_output"] is True
    assert cases["memory"]["idle_agent_rss_mb"] > 0
