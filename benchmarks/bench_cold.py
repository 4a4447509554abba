"""Cold one-shot commands: wall time of `notes-rag search` and `notes-rag ask` as fresh processes.

    python benchmarks/bench_cold.py [--runs 5] [--json out.json] [--root CHECKOUT]

Each command runs as a new Python process (what a user typing it gets: imports, loading the
encoder, the index and the model, then the answer), `--runs` times, on the bundled corpus
(index at corpus/.notes-rag, built first if missing) of this repository, or of `--root` (another
checkout, e.g. a `git worktree` of an older commit, to time before and after). One unmeasured run of each command comes
first, so the page cache holds the files and a missing encoder cache is converted once; "cold"
means a cold process, not a cold disk. Prints min / p50 / max per command and the load average
before and after, and the CPU seconds (user + system, all threads) of each run: on a shared
machine the wall time stretches with the load, the CPU time much less. Targets (issue 15, idle
two-core machine): ask ≤ 4 s when it abstains, ≤ 5 s otherwise; search ≤ 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "notes_rag"]
COMMANDS = [  # (name, arguments, target seconds)
    ("search", ["search", "Kto zaproponował matematyczny model neuronu?"], 3.0),
    ("ask (abstains)", ["ask", "What is the capital of Australia?"], 4.0),
    ("ask (answers)", ["ask", "Kto zaproponował matematyczny model neuronu?"], 5.0),
]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(root: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one cold run; `python -m` from `root` runs root's code."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(CLI + args, cwd=root, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"notes-rag {' '.join(args)} failed ({done.returncode}):\n{done.stderr.strip()}")
    return seconds, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--root", type=Path, default=REPO, help="checkout to time (default: this one)")
    args = ap.parse_args()
    root = args.root.resolve()

    if not (root / "corpus" / ".notes-rag" / "CURRENT.json").is_file():
        print("building the index: notes-rag index corpus/", flush=True)
        subprocess.run(CLI + ["index", "corpus/"], cwd=root, check=True)
    load_before = os.getloadavg()
    for _, cmd, _ in COMMANDS:
        run_once(root, cmd)  # warm-up: page cache, encoder cache
    # interleaved, so a burst of load elsewhere hits every command alike
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in COMMANDS}
    for _ in range(args.runs):
        for name, cmd, _ in COMMANDS:
            runs[name].append(run_once(root, cmd))
    load_after = os.getloadavg()

    results = []
    print(f"{'command':<16} {'min':>6} {'p50':>6} {'max':>6} {'target':>7}    {'CPU p50':>7}")
    for name, cmd, target in COMMANDS:
        wall, cpu = [w for w, _ in runs[name]], [c for _, c in runs[name]]
        p50, cpu50 = statistics.median(wall), statistics.median(cpu)
        mark = "ok    " if p50 <= target else "MISSED"
        print(f"{name:<16} {min(wall):6.2f} {p50:6.2f} {max(wall):6.2f} {target:6.1f}s {mark} {cpu50:6.2f}s")
        results.append(
            {"command": name, "args": cmd, "target": target, "seconds": wall, "cpu_seconds": cpu, "p50": p50}
        )
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"runs": args.runs, "load_before": load_before, "load_after": load_after, "results": results})
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
