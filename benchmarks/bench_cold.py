"""Cold one-shot commands: wall time of `notes-rag search` and `notes-rag ask` as fresh processes.

    python benchmarks/bench_cold.py [--runs 5] [--json out.json]

Each command runs as a new Python process (what a user typing it gets: imports, loading the
encoder, the index and the model, then the answer), `--runs` times, on the bundled corpus
(index at corpus/.notes-rag, built first if missing). One unmeasured run of each command comes
first, so the page cache holds the files and a missing encoder cache is converted once; "cold"
means a cold process, not a cold disk. Prints min / p50 / max per command and the load average
before and after, since the machine is shared. Targets (issue 15, idle two-core machine): ask
≤ 4 s when it abstains, ≤ 5 s otherwise; search ≤ 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "notes_rag"]
COMMANDS = [  # (name, arguments, target seconds)
    ("search", ["search", "Kto zaproponował matematyczny model neuronu?"], 3.0),
    ("ask (abstains)", ["ask", "What is the capital of Australia?"], 4.0),
    ("ask (answers)", ["ask", "Kto zaproponował matematyczny model neuronu?"], 5.0),
]


def run_once(args: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(CLI + args, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"notes-rag {' '.join(args)} failed ({done.returncode}):\n{done.stderr.strip()}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    if not (ROOT / "corpus" / ".notes-rag" / "CURRENT.json").is_file():
        print("building the index: notes-rag index corpus/", flush=True)
        subprocess.run(CLI + ["index", "corpus/"], cwd=ROOT, check=True)
    load_before = os.getloadavg()
    for _, cmd, _ in COMMANDS:
        run_once(cmd)  # warm-up: page cache, encoder cache
    # interleaved, so a burst of load elsewhere hits every command alike
    times: dict[str, list[float]] = {name: [] for name, _, _ in COMMANDS}
    for _ in range(args.runs):
        for name, cmd, _ in COMMANDS:
            times[name].append(run_once(cmd))
    load_after = os.getloadavg()

    results = []
    print(f"{'command':<16} {'min':>6} {'p50':>6} {'max':>6} {'target':>7}")
    for name, cmd, target in COMMANDS:
        t = times[name]
        p50 = statistics.median(t)
        mark = "ok" if p50 <= target else "MISSED"
        print(f"{name:<16} {min(t):6.2f} {p50:6.2f} {max(t):6.2f} {target:6.1f}s {mark}")
        results.append({"command": name, "args": cmd, "seconds": t, "p50": p50, "target": target})
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"runs": args.runs, "load_before": load_before, "load_after": load_after, "results": results})
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
