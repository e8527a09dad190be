"""Per-run limits: cgroup v2 detection and setup (on a directory laid out like cgroupfs: this machine has
no delegated cgroup v2 controllers, see docs/security.md), the fallback's options, and process accounting
on the real /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from outpost.agent import limits
from outpost.agent.limits import CgroupV2, Limits


def _fake_proc(tmp_path: Path, mount: Path, own: str) -> Path:
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text(f"proc /proc proc rw 0 0\ncgroup2 {mount} cgroup2 rw 0 0\n")
    (proc / "cgroup").write_text(f"0::{own}\n")
    return tmp_path / "proc"


def test_detect_and_create(tmp_path: Path) -> None:
    mount = tmp_path / "cgroup"
    root = mount / "system.slice" / "outpost-agent.service"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("\n")
    (root / "cgroup.procs").write_text(f"{os.getpid()}\n")
    found, why = CgroupV2.detect(_fake_proc(tmp_path, mount, "/system.slice/outpost-agent.service"))
    assert found is not None and found.root == root, why
    found.prepare()
    assert (root / "agent" / "cgroup.procs").read_text() == str(os.getpid())  # the agent moved into a leaf
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    group = found.create("run-1", Limits(memory_mb=512, cpus=1.5, pids=100))
    assert (group / "memory.max").read_text() == str(512 * 1024 * 1024)
    assert (group / "memory.swap.max").read_text() == "0"
    assert (group / "pids.max").read_text() == "100"
    assert (group / "cpu.max").read_text() == "150000 100000"
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert limits.oom_kills(group) == 1


def test_detect_refuses_a_hybrid_machine(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    mount.mkdir()
    (mount / "cgroup.controllers").write_text("hugetlb\n")
    found, why = CgroupV2.detect(_fake_proc(tmp_path, mount, "/"))
    assert found is None
    assert "memory, pids, cpu are not available" in why


def test_detect_without_cgroup2(tmp_path: Path) -> None:
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n")
    (proc / "cgroup").write_text("4:memory:/x\n")
    assert CgroupV2.detect(tmp_path / "proc")[0] is None


def test_fallback_options() -> None:
    both = limits.rlimit_options(Limits(memory_mb=100, cpus=1, pids=50), own_uid=True)
    assert both == ["--rlimit", f"DATA={200 * 1024 * 1024}", "--rlimit", "NPROC=50", "--nice", "10"]
    # RLIMIT_NPROC counts per uid: without a uid of the run's own it would count the agent's processes.
    assert "--rlimit" not in limits.rlimit_options(Limits(pids=50), own_uid=False)


def test_descendants_and_their_memory() -> None:
    code = "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)']); print(p.pid, flush=True); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    grandchild = 0
    try:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while grandchild not in limits.descendants(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = limits.descendants(os.getpid())
        assert parent.pid in tree and grandchild in tree
        assert limits.resident_bytes([parent.pid, grandchild]) > 1024 * 1024
        assert limits.resident_bytes([2**22 + 12345]) == 0  # a pid that is gone counts nothing
    finally:
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
