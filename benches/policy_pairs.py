#!/usr/bin/env python3
"""The cost of audit_policy + redact from stdin into a blackhole, in pairs of runs.

    benches/policy_pairs.py [EVENTS] [ROUNDS]      (default 300,000 events, 30 rounds)

A pipeline that only decodes (stdin -> blackhole) is the harshest place to
measure the transforms: there is no sink work beside them. On a shared machine
its run time moves by 15 % from one run to the next, as much as the effect, so
fastest-of-N figures (benches/policy_e2e.sh) do not settle it. This runs the
pipeline without and with the transforms one right after the other, ROUNDS
times, and reports the medians of wall-clock and CPU time (user + system) and
the median of each pair's CPU overhead with its quartiles.

AUDITFLOW_BIN=PATH measures another build (default: target/release/auditflow,
built first); AUDITFLOW_BIN_BEFORE=PATH measures a second build in the same
rounds, each of its pairs right after the first build's.
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pipeline(work, name, transforms):
    """Writes a stdin -> [audit_policy -> redact ->] blackhole configuration; returns its path."""
    policy = os.path.join(ROOT, "examples", "policy.yaml")
    text = f'data_dir = "{work}/data-{name}"\n[sources.in]\ntype = "stdin"\n'
    last = "in"
    if transforms:
        text += (
            f'[transforms.policy]\ntype = "audit_policy"\ninputs = ["in"]\npolicy_file = "{policy}"\n'
            '[transforms.redact]\ntype = "redact"\ninputs = ["policy"]\n'
        )
        last = "redact"
    text += f'[sinks.out]\ntype = "blackhole"\ninputs = ["{last}"]\n'
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as config:
        config.write(text)
    return path


def timed(binary, config, input_path):
    """Runs one pipeline over the input; returns (wall seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    with open(input_path) as stdin:
        subprocess.run(
            [binary, "run", "--once", "--config", config],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def percent(after, before):
    return 100 * (after - before) / before


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    if rounds < 2:
        sys.exit("policy_pairs.py: ROUNDS must be 2 or more (the quartiles need two pairs)")
    binary = os.environ.get("AUDITFLOW_BIN")
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "auditflow")
    builds = {"this": binary}
    if os.environ.get("AUDITFLOW_BIN_BEFORE"):
        builds["before"] = os.environ["AUDITFLOW_BIN_BEFORE"]
    with tempfile.TemporaryDirectory() as work:
        input_path = os.path.join(work, "input.ndjson")
        with open(input_path, "w") as out:
            subprocess.run(
                [binary, "generate", "--count", str(events), "--seed", "42"], stdout=out, check=True
            )
        configs = {"pass": pipeline(work, "pass", False), "policy": pipeline(work, "policy", True)}
        runs = {(build, kind): [] for build in builds for kind in configs}
        for _ in range(rounds):
            for build, path in builds.items():
                for kind, config in configs.items():
                    runs[(build, kind)].append(timed(path, config, input_path))
    print(f"{events} events, {rounds} pairs of runs, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for build, path in builds.items():
        plain, with_transforms = runs[(build, "pass")], runs[(build, "policy")]
        wall = [statistics.median(run[0] for run in side) for side in (plain, with_transforms)]
        cpu = [statistics.median(run[1] for run in side) for side in (plain, with_transforms)]
        pairs = sorted(percent(t[1], p[1]) for p, t in zip(plain, with_transforms))
        quartiles = statistics.quantiles(pairs, n=4)
        print(f"{build} build: {path}")
        print(f"  stdin -> blackhole                      median {wall[0]:.3f} s, CPU {cpu[0]:.3f} s")
        print(f"  stdin -> policy -> redact -> blackhole  median {wall[1]:.3f} s, CPU {cpu[1]:.3f} s")
        print(
            f"  with the transforms: time {percent(wall[1], wall[0]):+.1f} %, CPU {percent(cpu[1], cpu[0]):+.1f} %;"
            f" CPU of each pair: median {statistics.median(pairs):+.1f} %,"
            f" quartiles {quartiles[0]:+.1f} % .. {quartiles[2]:+.1f} %"
        )


if __name__ == "__main__":
    main()
