"""`notes-rag align-data`: English–Polish parallel text in our domain (kit documents, Debian's
gettext catalogues, Tatoeba); `notes-rag align-train`: fine-tune the retrieval encoder on it and
write the encoder delta (docs/ENCODER.md).

Example:
    notes-rag align-data --out data/align
    notes-rag align-train --data data/align --out runs/align --time-budget 40
    cp runs/align/encoder-delta.* models/
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from notes_rag.cli.app import app
from notes_rag.fileio import atomic_write_json
from notes_rag.index.align_data import AlignDataConfig, read_pairs, write_align_data
from notes_rag.index.align_train import AlignTrainConfig

console = Console()
_DATA = AlignDataConfig()
_TRAIN = AlignTrainConfig()


@app.command("align-data")
def align_data(
    out: Path = typer.Option(Path("data/align"), "--out", help="Folder for train.jsonl, heldout.jsonl, stats.json."),
    kit: Path = typer.Option(_DATA.kit_dir, "--kit", help="The kit's pretrain/ folder."),
    tatoeba: Path = typer.Option(_DATA.tatoeba, "--tatoeba", help="Tatoeba EN–PL pairs (jsonl.xz)."),
    locale: Path = typer.Option(_DATA.locale_dir, "--locale", help="Folder of Polish gettext .mo catalogues."),
) -> None:
    """Align the kit's documents by page and paragraph, add gettext messages and Tatoeba; split off held-out pairs."""
    t0 = time.perf_counter()
    stats = write_align_data(AlignDataConfig(kit_dir=kit, tatoeba=tatoeba, locale_dir=locale), out)
    table = Table("source", "train", "held out")
    for kind, counts in stats.items():
        table.add_row(kind, str(counts["train"]), str(counts["heldout"]))
    console.print(table)
    console.print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")


@app.command("align-train")
def align_train(
    data: Path = typer.Option(Path("data/align"), "--data", help="An align-data folder."),
    out: Path = typer.Option(Path("runs/align"), "--out", help="Folder for the delta, its header and scores.json."),
    loss: str = typer.Option(_TRAIN.loss, "--loss", help="mse (distillation), mnrl (in-batch negatives) or both."),
    layers: int = typer.Option(_TRAIN.layers, "--layers", min=1, max=12, help="Top transformer layers trained."),
    epochs: float = typer.Option(_TRAIN.epochs, "--epochs", help="Passes over the training pairs."),
    lr: float = typer.Option(_TRAIN.lr, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(_TRAIN.batch_size, "--batch-size", help="Pairs per step."),
    time_budget: float = typer.Option(_TRAIN.time_budget_s / 60, "--time-budget", help="Minutes; stops there."),
    limit: int = typer.Option(0, "--limit", help="Use only the first N training pairs (0: all); for a smoke run."),
    heldout_n: int = typer.Option(600, "--heldout", help="Held-out pairs scored before and after (a seeded sample)."),
) -> None:
    """Fine-tune the shipped multilingual-e5-small so Polish lands on its English original; score before and after."""
    from notes_rag.index import encoder as E
    from notes_rag.index import encoder_cache as C
    from notes_rag.index.align_train import heldout_scores, train_alignment

    cfg = AlignTrainConfig(
        loss=loss, layers=layers, epochs=epochs, lr=lr, batch_size=batch_size, time_budget_s=time_budget * 60
    )
    pairs = read_pairs(data / "train.jsonl")[: limit or None]
    heldout = read_pairs(data / "heldout.jsonl")
    heldout = random.Random(0).sample(heldout, min(heldout_n, len(heldout)))
    base = C.ensure_default_model()  # the plain converted model: a delta never trains on a delta
    model = E.load_encoder(base, trainable=True)
    before = heldout_scores(model, heldout)
    console.print(f"held-out before: {before}")
    delta = train_alignment(model, pairs, cfg, out, C.encoder_id(base))
    model.eval()
    after = heldout_scores(model, heldout)
    console.print(f"held-out after: {after}")
    console.print(f"delta: {delta} (copy it and its .json header into models/ to ship it)")
    scores = {"before": before, "after": after, "delta": str(delta)}
    atomic_write_json(out / "scores.json", scores)
