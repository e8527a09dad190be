"""The agent's kept plan directories (outpost.agent.kept): a shortcut that must never apply the wrong plan."""

from __future__ import annotations

import time
from pathlib import Path

from outpost.agent.kept import KeptPlan, PlanKeeper


def kept(tmp_path: Path, run_id: str, sha: str = "a" * 64, age: float = 0.0) -> KeptPlan:
    root = tmp_path / f"job-{run_id}"
    workdir = root / "work" / "config"
    workdir.mkdir(parents=True)
    (root / "work" / "plan.tfplan").write_bytes(b"plan")
    return KeptPlan(run_id, root, root / "work", workdir, sha, time.monotonic() - age)


def test_the_same_runs_apply_takes_the_directory_once(tmp_path: Path) -> None:
    keeper = PlanKeeper(limit=2)
    plan = kept(tmp_path, "run-1")
    keeper.keep(plan)
    assert keeper.take("run-2", "a" * 64) is None
    assert keeper.take("run-1", "a" * 64) == plan
    assert plan.root.is_dir()  # the taker owns it now
    assert keeper.take("run-1", "a" * 64) is None and len(keeper) == 0


def test_a_different_saved_plan_discards_the_directory(tmp_path: Path) -> None:
    keeper = PlanKeeper(limit=2)
    plan = kept(tmp_path, "run-1", sha="a" * 64)
    keeper.keep(plan)
    assert keeper.take("run-1", "b" * 64) is None
    assert not plan.root.exists()
    keeper.keep(kept(tmp_path, "run-3"))
    assert keeper.take("run-3", None) is None  # a server that sends no digest gets the normal path


def test_the_oldest_goes_beyond_the_limit_and_stale_ones_expire(tmp_path: Path) -> None:
    keeper = PlanKeeper(limit=2, ttl=60)
    old, middle, new = kept(tmp_path, "old", age=30), kept(tmp_path, "middle", age=20), kept(tmp_path, "new")
    for plan in (old, middle, new):
        keeper.keep(plan)
    assert not old.root.exists() and middle.root.is_dir() and len(keeper) == 2
    stale = kept(tmp_path, "stale", age=61)
    keeper.keep(stale)
    assert keeper.take("stale", "a" * 64) is None and not stale.root.exists()
    keeper.clear()
    assert not middle.root.exists() and not new.root.exists() and len(keeper) == 0
