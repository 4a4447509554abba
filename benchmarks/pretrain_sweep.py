"""Scaling sweep: pretrain several model sizes / optimizers for the same wall-clock budget.

    python benchmarks/pretrain_sweep.py --data ../shared/data/pretrain --out runs/sweep \\
        --tokenizer models/tokenizer.json --minutes 10 --runs small:adamw,base:adamw,medium:adamw,small:muon

Every run uses the same tokenizer, data, seed, batch (16,384 tokens) and schedule shape
(warmup, flat, linear decay over the last 30% of its budget), so the only differences are the
preset and the optimizer. `--shards-from` reuses an existing run's tokenized shards (hard links)
instead of tokenizing again; a run folder that already holds a finished run is only read, an
interrupted one is resumed. Results: `<out>/sweep.json` (final validation bits per byte,
tokens, parameters, throughput per run) and `<out>/sweep.png` (validation bpb against training
minutes and against tokens).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.model.gpt import GPT, GPTConfig  # noqa: E402
from notes_rag.model.tokenizer import TOKENIZER_FILE  # noqa: E402
from notes_rag.train.loop import TrainConfig  # noqa: E402
from notes_rag.train.pretrain import PretrainConfig, pretrain  # noqa: E402
from notes_rag.train.pretrain_data import DataConfig  # noqa: E402


def _prepare_folder(out: Path, tokenizer: Path, shards_from: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if not (out / TOKENIZER_FILE).exists():
        shutil.copyfile(tokenizer, out / TOKENIZER_FILE)
    if shards_from and not (out / "data").exists():
        shutil.copytree(shards_from, out / "data", copy_function=lambda s, d: Path(d).hardlink_to(s))


def _read_metrics(run: Path) -> tuple[list[dict], int | None]:
    """The run's evaluations (with the training minutes they came at) and its median tokens/s."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    elapsed = {r["step"]: r["elapsed"] for r in rows if "elapsed" in r}
    evals = [{**r, "elapsed": elapsed.get(r["step"])} for r in rows if "val_bpb" in r]
    tps = sorted(r["tok_per_s"] for r in rows if "tok_per_s" in r)
    return evals, (tps[len(tps) // 2] if tps else None)


def _plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        ev = [e for e in r["evals"] if e["elapsed"] is not None]
        label = f"{r['name']} ({r['params'] / 1e6:.1f}M)"
        a.plot([e["elapsed"] / 60 for e in ev], [e["val_bpb"] for e in ev], marker=".", label=label)
        b.plot([e["tokens"] / 1e6 for e in ev], [e["val_bpb"] for e in ev], marker=".", label=label)
    a.set_xlabel("training minutes")
    b.set_xlabel("tokens (M)")
    for ax in (a, b):
        ax.set_ylabel("validation bits per byte")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("pretraining at equal wall-clock budget")
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True, help="sweep folder; one run folder per entry")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--shards-from", type=Path, help="an existing run's data/ folder made with the same tokenizer")
    ap.add_argument("--minutes", type=float, default=10.0, help="training-time budget per run")
    ap.add_argument(
        "--runs",
        default="small:adamw,base:adamw,medium:adamw,small:muon",
        help="comma-separated preset:optimizer entries",
    )
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--muon-lr", type=float, default=0.02)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    console = Console(stderr=True)
    results = []
    for entry in args.runs.split(","):
        preset_name, _, optimizer = entry.partition(":")
        name = f"{preset_name}-{optimizer or 'adamw'}"
        run = args.out / name
        _prepare_folder(run, args.tokenizer, args.shards_from)
        tc = TrainConfig(
            lr=args.lr,
            optimizer=optimizer or "adamw",
            muon_lr=args.muon_lr,
            time_budget=args.minutes * 60,
            eval_every=args.eval_every,
            warmup_steps=args.warmup,
        )
        cfg = PretrainConfig(model=preset_name, seq_len=512, data=DataConfig(upsample={"pl": 3}), train=tc)
        console.rule(name)
        state_file = run / "last" / "train_state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else None
        finished = state is not None and state["reason"] == "done"
        if not finished:  # a fresh run, or one interrupted earlier and resumed here
            pretrain(args.data, run, cfg, resume=state is not None, console=console)
        evals, median_tps = _read_metrics(run)
        last = evals[-1]
        model = json.loads((run / "last" / "config.json").read_text())["model"]
        results.append(
            {
                "name": name,
                "preset": preset_name,
                "optimizer": optimizer or "adamw",
                "params": GPT(GPTConfig.from_dict(model)).num_params(),
                "val_bpb": last["val_bpb"],
                "val_loss": last["val_loss"],
                "tokens": last["tokens"],
                "steps": last["step"],
                "median_tok_per_s": median_tps,
                "evals": evals,
                "resumed_finished_run": finished,
            }
        )

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(),
        "torch": torch.__version__,
        "minutes": args.minutes,
        "lr": args.lr,
        "muon_lr": args.muon_lr,
        "runs": results,
    }
    atomic_write_json(args.out / "sweep.json", report)
    _plot(results, args.out / "sweep.png")
    table = Table(title=f"pretraining sweep: {args.minutes:g} training minutes per run")
    for col in ("run", "params", "steps", "tokens", "median tok/s", "val loss", "val bpb"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["name"],
            f"{r['params'] / 1e6:.2f}M",
            str(r["steps"]),
            f"{r['tokens'] / 1e6:.2f}M",
            f"{r['median_tok_per_s']:,}",
            f"{r['val_loss']:.3f}",
            f"{r['val_bpb']:.3f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
