"""Outpost's benchmarks: dispatch latency, ramp-up, capacity, throughput, agent overhead, log streaming, memory.

Run them with `./scripts/bench` (all, a few minutes) or `./scripts/bench --quick` (a smoke run). Many
agents are simulated in one process with the real agent protocol client over real HTTP; the overhead and
log cases use a real `outpost agent` and real terraform.
"""
