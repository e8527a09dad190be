"""The table printed after a run, with each figure next to its target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Getter = Callable[[dict[str, Any]], Any]


def _get(*path: str) -> Getter:
    def get(cases: dict[str, Any]) -> Any:
        node: Any = cases
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    return get


# (what, getter, target as text, check)
TARGETS: list[tuple[str, Getter, str, Callable[[Any], bool]]] = [
    (
        "dispatch p99, 1000 idle agents (ms)",
        _get("dispatch", "1000", "from_creation_answer", "p99_ms"),
        "< 50",
        lambda v: v < 50,
    ),
    ("dispatch p50 / ping p50, 1000 agents", _get("dispatch", "1000", "p50_over_ping_p50"), "<= 3", lambda v: v <= 3),
    ("ramp: 120 runs on 120 agents all started (s)", _get("ramp", "all_started_s", "median"), "< 2", lambda v: v < 2),
    ("largest idle fleet held by one process", lambda c: _held(c.get("capacity")), ">= 10000", lambda v: v >= 10000),
    ("10000 idle agents: errors", _get("capacity", "10000", "errors"), "0", lambda v: v == 0),
    (
        "10000 idle agents: dispatch p99 (ms)",
        _get("capacity", "10000", "dispatch", "p99_ms"),
        "< 200",
        lambda v: v < 200,
    ),
    (
        "throughput, one process, SQLite (jobs/s)",
        _get("throughput", "sqlite_one_process", "jobs_per_second"),
        ">= 300",
        lambda v: v >= 300,
    ),
    ("overhead ratio, 200 resources", _get("overhead", "200", "ratio"), "<= 1.15", lambda v: v <= 1.15),
    ("log delivery lag p99 (ms)", _get("logs", "delivery_lag", "p99_ms"), "< 250", lambda v: v < 250),
    (
        "stored log equals terraform's output",
        _get("logs", "stored_equals_terraform_output"),
        "true",
        lambda v: v is True,
    ),
    ("idle agent RSS (MB)", _get("memory", "idle_agent_rss_mb"), "<= 60", lambda v: v <= 60),
    ("server RSS with 1000 agents (MB)", _get("capacity", "1000", "server_rss_mb"), "<= 300", lambda v: v <= 300),
]


def _held(capacity: Any) -> int | None:
    """The largest fleet size measured without a failure."""
    if not isinstance(capacity, dict):
        return None
    sizes = [int(k) for k, v in capacity.items() if k.isdigit() and isinstance(v, dict) and "error" not in v]
    return max(sizes, default=0)


def _flatten(prefix: str, node: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else key, value, rows)
    elif isinstance(node, list):
        rows.append((prefix, ", ".join(str(x) for x in node)))
    else:
        rows.append((prefix, str(node)))


def render(results: dict[str, Any]) -> str:
    cases = results["cases"]
    lines = [
        f"Outpost benchmarks ({results['mode']}) on {results['machine']['cpu']}, {results['machine']['cores']} cores",
        "",
    ]
    lines.append(f"{'target':<48} {'measured':>12} {'goal':>8}  ")
    for what, get, goal, check in TARGETS:
        value = get(cases)
        verdict = "not measured" if value is None else ("ok" if check(value) else "MISSED")
        lines.append(f"{what:<48} {'-' if value is None else str(value):>12} {goal:>8}  {verdict}")
    lines += ["", "all figures:"]
    rows: list[tuple[str, str]] = []
    _flatten("", cases, rows)
    width = max((len(k) for k, _ in rows), default=10)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
