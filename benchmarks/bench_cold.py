"""Cold one-shot commands: wall and CPU time of `notes-rag --help`, `index --dry-run`, `search`
and `ask` as fresh processes, and whether each imported torch; on which processor.

    python benchmarks/bench_cold.py [--runs 5] [--json out.json] [--root CHECKOUT]

Each command runs as a new Python process (what a user typing it gets: imports, loading the
encoder, the index and the model, then the answer), `--runs` times, on the bundled corpus
(index at corpus/.notes-rag, built first if missing) of this repository, or of `--root` (another
checkout, e.g. a `git worktree` of an older commit, to time before and after). One unmeasured run of each command comes
first, so the page cache holds the files and a missing encoder cache is converted once; "cold"
means a cold process, not a cold disk. Prints min / p50 / max per command and the load average
before and after, and the CPU seconds (user + system, all threads) of each run: on a shared
machine the wall time stretches with the load, the CPU time much less. The warm-up run of each
command goes through `python -X importtime`, which says whether it imported torch (issue 24:
`--help`, `search` and `index --dry-run` never do; `ask` does not on its default answer path,
model/numpy_gpt.py). `import torch` alone is timed too: what a command that needs it pays first.
The processor is named (lscpu model, and the flags that decide matmul speed: avx2, avx512f,
avx512_bf16, amx). Targets (issues 15 and 24, on the slowest CPU we get): --help < 1 s, search
≤ 3 s, ask ≤ 4 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "notes_rag"]
COMMANDS = [  # (name, arguments, target seconds)
    ("--help", ["--help"], 1.0),
    ("index --dry-run", ["index", "corpus/", "--dry-run"], 3.0),
    ("search", ["search", "Kto zaproponował matematyczny model neuronu?"], 3.0),
    ("ask (abstains)", ["ask", "What is the capital of Australia?"], 4.0),
    ("ask (answers)", ["ask", "Kto zaproponował matematyczny model neuronu?"], 4.0),
]
IMPORT_TORCH = [sys.executable, "-c", "import torch"]
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def processor() -> dict:
    """The CPU's model name and matmul-relevant flags (Linux: /proc/cpuinfo), and the core count."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or "unknown", "flags": [], "cores": os.cpu_count()}
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", info, re.M).group(1).split()) if "flags" in info else set()
    return {
        "model": model.group(1).strip() if model else "unknown",
        "flags": [f for f in CPU_FLAGS if f in flags],
        "cores": os.cpu_count(),
    }


def imports_torch(root: Path, args: list[str]) -> bool:
    """Run once under `-X importtime` (also the warm-up): did the command import torch?"""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "notes_rag", *args], cwd=root, capture_output=True, text=True
    )
    return any(re.search(r"\|\s+torch$", line.rstrip()) for line in done.stderr.splitlines())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(root: Path, args: list[str], cmd: list[str] = CLI) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one cold run; `python -m` from `root` runs root's code."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd + args, cwd=root, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd + args)} failed ({done.returncode}):\n{done.stderr.strip()}")
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
    cpu = processor()
    print(f"processor: {cpu['model']} ({cpu['cores']} cores; {' '.join(cpu['flags']) or 'no avx2'})")
    load_before = os.getloadavg()
    torch_imported = {name: imports_torch(root, cmd) for name, cmd, _ in COMMANDS}  # also the warm-up
    run_once(root, [], IMPORT_TORCH)
    # interleaved, so a burst of load elsewhere hits every command alike
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in COMMANDS}
    runs["import torch"] = []
    for _ in range(args.runs):
        for name, cmd, _ in COMMANDS:
            runs[name].append(run_once(root, cmd))
        runs["import torch"].append(run_once(root, [], IMPORT_TORCH))
    load_after = os.getloadavg()

    results = []
    print(f"{'command':<16} {'min':>6} {'p50':>6} {'max':>6} {'target':>7}        {'CPU p50':>7}  torch")
    for name, cmd, target in [*COMMANDS, ("import torch", IMPORT_TORCH[1:], None)]:
        wall, cpu_s = [w for w, _ in runs[name]], [c for _, c in runs[name]]
        p50, cpu50 = statistics.median(wall), statistics.median(cpu_s)
        mark = "" if target is None else "ok" if p50 <= target else "MISSED"
        goal = "" if target is None else f"{target:.1f}s"
        imported = {True: "yes", False: "no"}.get(torch_imported.get(name), "")
        print(f"{name:<16} {min(wall):6.2f} {p50:6.2f} {max(wall):6.2f} {goal:>7} {mark:<6} {cpu50:6.2f}s  {imported}")
        results.append(
            {
                "command": name,
                "args": cmd,
                "target": target,
                "seconds": wall,
                "cpu_seconds": cpu_s,
                "p50": p50,
                "cpu_p50": cpu50,
                "imports_torch": torch_imported.get(name),
            }
        )
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        out = {"processor": cpu, "runs": args.runs, "load_before": load_before, "load_after": load_after}
        args.json.write_text(json.dumps({**out, "results": results}) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
