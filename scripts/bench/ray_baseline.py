"""The Ray baseline of `crowdcloud bench dispatch`, run side by side on the same machine.

Measures what the crowdcloud benchmark measures, with Ray's own means: N no-op remote tasks
submitted asynchronously (throughput, first submit to last result), and R sequential
round trips of one no-op task (latency p50/p99/max). Prints one JSON object.

Usage: python ray_baseline.py TASKS ROUND_TRIPS CPUS
Needs `pip install ray==2.60.0` (a virtualenv is best); it is not part of crowdcloud.
"""

import json
import sys
import time

import ray


@ray.remote
def noop():
    return None


def main():
    tasks, round_trips, cpus = (int(arg) for arg in sys.argv[1:4])
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    ray.get([noop.remote() for _ in range(200)])  # warm up the workers
    started = time.perf_counter()
    ray.get([noop.remote() for _ in range(tasks)])
    elapsed = time.perf_counter() - started
    latencies = []
    for _ in range(round_trips):
        began = time.perf_counter()
        ray.get(noop.remote())
        latencies.append((time.perf_counter() - began) * 1000.0)
    latencies.sort()
    ray.shutdown()
    print(json.dumps({
        "tasks": tasks,
        "tasks_per_s": tasks / elapsed,
        "round_trips": round_trips,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, (len(latencies) * 99) // 100)],
        "max_ms": latencies[-1],
    }))


if __name__ == "__main__":
    main()
