"""`notes-rag sft-data`: build the finetuning conversations (train.jsonl / val.jsonl);
`notes-rag lexicon`: induce the packaged English–Polish lexicon from the kit's sentence pairs.

Example: `notes-rag sft-data --out data/sft --mix poquad=2,ropes=0.05 --seed 7`
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from notes_rag.cli.app import app
from notes_rag.errors import NotesRagError
from notes_rag.index.lexicon import PACKAGED, Lexicon
from notes_rag.index.lexicon_induction import PAIRS_FILE, induce, kit_pairs
from notes_rag.model.tokenizer import load_tokenizer
from notes_rag.sft.build import build_sft, summary, throwaway_tokenizer, write_jsonl
from notes_rag.sft.config import DEFAULT_MIX, BuildConfig

console = Console()
_CFG = BuildConfig()  # the options' defaults


def _parse_mix(text: str) -> dict[str, float]:
    mix = dict(DEFAULT_MIX)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise NotesRagError(f"bad --mix entry {part!r}: expected source=weight, e.g. poquad=1.5") from None
    return mix


@app.command("sft-data")
def sft_data(
    out: Path = typer.Option(Path("data/sft"), "--out", help="Folder for train.jsonl and val.jsonl."),
    kit: Path = typer.Option(_CFG.data_dir, "--kit", help="Data kit folder holding sft/ and pretrain/."),
    mix: str = typer.Option(
        "", "--mix", help=f"Per-source multipliers, e.g. poquad=2,ropes=0.05. Sources: {', '.join(DEFAULT_MIX)}."
    ),
    seed: int = typer.Option(_CFG.seed, "--seed", help="Random seed (same seed, same data)."),
    tokenizer: Path = typer.Option(
        Path("runs/tok/tokenizer.json"), "--tokenizer", help="Tokenizer used to measure and cap conversation length."
    ),
    max_tokens: int = typer.Option(_CFG.max_tokens, "--max-tokens", help="Longest rendered conversation kept."),
) -> None:
    """Convert the SFT kit and generated QA into chat-format conversations with a held-out split."""
    t0 = time.time()
    if tokenizer.exists():
        tok = load_tokenizer(tokenizer)
    else:
        console.print(f"[yellow]{tokenizer} not found: measuring lengths with a throwaway 8k tokenizer[/]")
        tok = throwaway_tokenizer(kit)
    cfg = BuildConfig(data_dir=kit, seed=seed, mix=_parse_mix(mix), max_tokens=max_tokens)
    with console.status("building") as status:
        res = build_sft(cfg, tok, progress=lambda s: status.update(f"building: {s}"))
    write_jsonl(out / "train.jsonl", res.train)
    write_jsonl(out / "val.jsonl", res.val)

    table = Table(title=f"SFT conversations in {out}")
    for col in ("source", "lang", "train", "val"):
        table.add_column(col, justify="left" if col in ("source", "lang") else "right")
    for source, lang in sorted({(s, lg) for s, lg, _ in res.counts}):
        table.add_row(source, lang, str(res.counts[(source, lang, "train")]), str(res.counts[(source, lang, "val")]))
    table.add_row("[b]total", "", f"[b]{len(res.train)}", f"[b]{len(res.val)}")
    console.print(table)
    stats = Table(title="summary")
    stats.add_column("split")
    for col in ("conversations", "polish", "unanswerable", "multi_turn", "tokens_p50", "tokens_p95", "tokens_max"):
        stats.add_column(col, justify="right")
    for name, recs in (("train", res.train), ("val", res.val)):
        s = summary(recs)
        stats.add_row(name, *(f"{v:.1%}" if isinstance(v, float) else str(v) for v in s.values()))
    console.print(stats)
    if res.dropped:
        console.print("dropped: " + ", ".join(f"{k}: {v}" for k, v in res.dropped.items()))
    console.print(f"built in {time.time() - t0:.0f} s")


@app.command("lexicon")
def lexicon(
    kit: Path = typer.Option(_CFG.data_dir, "--kit", help="Data kit folder holding sft/."),
    out: Path = typer.Option(PACKAGED, "--out", help="Lexicon file to write (default: the packaged one)."),
) -> None:
    """Induce the English-Polish word lexicon (IBM Model 1) from parallel text: the kit's Tatoeba
    pairs and bilingual documents, and Debian's Polish gettext catalogues."""
    path = Path(kit) / "sft" / PAIRS_FILE
    if not path.is_file():
        raise NotesRagError(f"no sentence pairs at {path}; point --kit at the data kit folder")
    t0 = time.time()
    with console.status("aligning the parallel text (Tatoeba, the kit's bilingual documents, .mo catalogues)"):
        entries = induce(kit_pairs(Path(kit)))
    Lexicon(entries).save(out)
    console.print(
        f"{len(entries['en'])} English and {len(entries['pl'])} Polish stems -> {out} ({time.time() - t0:.0f} s)"
    )
