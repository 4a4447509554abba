"""Every eval set side by side: dev, dev2 and the external reading corpus, with 95% intervals.

    python benchmarks/eval_all.py [--no-answers] [--model models/] [--json docs/benchmarks/eval_all.json]
        [--sets dev,dev2,external] [--markdown table.md]

- dev: `../shared/eval/dev.jsonl` over `corpus/` (the team's test set; skipped without ../shared);
- dev2: `eval_sets/dev2/qa.jsonl` over `eval_sets/dev2/notes/`, also split into its fit half and
  its test half (`notes_rag.eval.splits`: constants may be fitted on the first, never the second);
- external: held-out kit articles as notes (`benchmarks/external_corpus.py`), built into the work
  folder from `data/sft/val.jsonl` (`notes-rag sft-data`) when missing; skipped without it.

Each set's index is built in `--work` (git-ignored `runs/eval_all/`; a second run re-embeds only
changed notes). Prints one table (rows: retrieval hit@1/3/5 and MRR, the answer metrics and
the extractive baseline, latency p50/p95; columns: the sets) and writes the per-set summaries
as JSON (`notes_rag.eval.all_sets`; schema of each summary in docs/EVAL.md, "JSON report").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.chat.assistant import AnswerConfig  # noqa: E402
from notes_rag.eval.all_sets import EvalSet, columns, markdown, run_all, table_rows  # noqa: E402
from notes_rag.fileio import atomic_write_json, atomic_write_text  # noqa: E402

console = Console()


def default_sets(work: Path) -> list[EvalSet]:
    return [
        EvalSet("dev", ROOT.parent / "shared" / "eval" / "dev.jsonl", ROOT / "corpus"),
        EvalSet("dev2", ROOT / "eval_sets" / "dev2" / "qa.jsonl", ROOT / "eval_sets" / "dev2" / "notes", split=True),
        EvalSet("external", work / "external" / "qa.jsonl", work / "external" / "notes"),
    ]


def ensure_external(work: Path, data: Path) -> None:
    """Write the external corpus into `work`/external from the kit's held-out split, once."""
    out = work / "external"
    if (out / "qa.jsonl").is_file() or not data.is_file():
        return
    script = ROOT / "benchmarks" / "external_corpus.py"
    subprocess.run([sys.executable, str(script), "--data", str(data), "--out", str(out)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "eval_all", help="indexes and built corpora")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "sft" / "val.jsonl", help="kit held-out split")
    ap.add_argument("--sets", default="dev,dev2,external", help="comma-separated subset of the sets")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: models/)")
    ap.add_argument("--no-answers", action="store_true", help="retrieval and the extractive baseline only")
    ap.add_argument("-k", type=int, default=AnswerConfig.k, help="passages given to the model")
    ap.add_argument("--json", type=Path, default=None, help="write the per-set summaries here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table as markdown here")
    args = ap.parse_args()

    wanted = args.sets.split(",")
    sets = [s for s in default_sets(args.work) if s.name in wanted]
    if "external" in wanted:
        ensure_external(args.work, args.data)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    tasks: list = []
    with progress:
        result = run_all(
            sets,
            args.work,
            model=args.model,
            answers=not args.no_answers,
            k=args.k,
            on_set=lambda s, n: tasks.append(progress.add_task(s.name, total=n)),
            on_item=lambda _: progress.advance(tasks[-1]),
        )
    import torch

    result["meta"] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
    }
    table = Table(title="All eval sets (95% intervals)", title_justify="left")
    table.add_column("")
    for label in columns(result):
        table.add_column(label, justify="right")
    for label, cells in table_rows(result):
        table.add_row(label, *cells)
    console.print(table)
    for name, r in result["sets"].items():
        if "skipped" in r:
            console.print(f"[yellow]{name} skipped:[/] {r['skipped']}")
    if args.json is not None:
        atomic_write_json(args.json, result)
        console.print(f"summaries written to {args.json}")
    if args.markdown is not None:
        atomic_write_text(args.markdown, markdown(result) + "\n")


if __name__ == "__main__":
    main()
