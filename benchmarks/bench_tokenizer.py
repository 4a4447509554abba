"""Bytes per token of a trained tokenizer on held-out Polish and English text.

    python benchmarks/bench_tokenizer.py --tokenizer runs/base-small/tokenizer.json \\
        --data /work/shared/data/pretrain --notes corpus --json runs/bench_tokenizer.json

Two held-out sets, reported apart:
- the pretraining kit's validation documents (`pretrain_data.is_validation(text, 0.01)`, the
  split `notes-rag pretrain` uses). The model never trained on them, but the tokenizer was
  trained on the whole kit (validation included), so this number flatters it a little;
- the user's notes (`--notes`, default `corpus/`), which neither the tokenizer nor the model ever
  saw: the number that matters. Each note's language comes from `lang.detect_lang`.

tiktoken's `gpt2` and `cl100k_base` are compared only when their files are already in the local
tiktoken cache: this script never downloads (a missing file is reported and skipped).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiktoken  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.lang import detect_lang  # noqa: E402
from notes_rag.model.tokenizer import load_tokenizer  # noqa: E402
from notes_rag.train.pretrain_data import find_data_files, is_validation, iter_corpus  # noqa: E402

console = Console()
REFERENCES = ("gpt2", "cl100k_base")


def load_offline(name: str) -> tiktoken.Encoding:
    """`tiktoken.get_encoding` with fetching disabled: only files already cached load."""
    import tiktoken.load as tl

    real = tl.read_file

    def no_fetch(blobpath: str) -> bytes:
        raise OSError(f"{blobpath} is not in the local tiktoken cache (not downloading)")

    tl.read_file = no_fetch
    try:
        return tiktoken.get_encoding(name)
    finally:
        tl.read_file = real


def held_out_sets(data: list[Path], notes: Path, val_fraction: float, max_docs: int | None) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {"kit-val/pl": [], "kit-val/en": [], "notes/pl": [], "notes/en": []}
    for text, lang in iter_corpus(find_data_files(data)):
        if is_validation(text, val_fraction):
            key = f"kit-val/{'pl' if lang == 'pl' else 'en'}"
            if max_docs is None or len(sets[key]) < max_docs:
                sets[key].append(text)
    for f in sorted(notes.rglob("*")):
        if f.is_file() and f.suffix in (".md", ".txt"):
            text = f.read_text(encoding="utf-8")
            sets[f"notes/{detect_lang(text)}"].append(text)
    return sets


def bytes_per_token(encode, texts: list[str]) -> dict:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(encode(t)) for t in texts)
    return {
        "docs": len(texts),
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", type=Path, default=Path("runs/base-small/tokenizer.json"))
    ap.add_argument("--data", type=Path, nargs="+", default=[Path("/work/shared/data/pretrain")])
    ap.add_argument("--notes", type=Path, default=Path("corpus"))
    ap.add_argument("--val-fraction", type=float, default=0.01)
    ap.add_argument("--max-docs", type=int, default=None, help="cap validation documents per language")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    tok = load_tokenizer(args.tokenizer)
    encoders = {f"ours ({tok.vocab_size})": tok.encode}
    skipped = {}
    for name in REFERENCES:
        try:
            enc = load_offline(name)
        except Exception as e:  # noqa: BLE001 - any failure to load means "not available offline"
            skipped[name] = str(e).splitlines()[0]
            console.print(f"[yellow]skipping tiktoken {name}: {skipped[name]}[/]")
            continue
        encoders[f"{name} ({enc.n_vocab})"] = lambda t, e=enc: e.encode(t, disallowed_special=())

    t = time.perf_counter()
    sets = held_out_sets(args.data, args.notes, args.val_fraction, args.max_docs)
    results = {enc: {s: bytes_per_token(fn, texts) for s, texts in sets.items()} for enc, fn in encoders.items()}
    elapsed = time.perf_counter() - t

    table = Table(title=f"Bytes per token (higher = more text per token), tokenizer {args.tokenizer}")
    table.add_column("set")
    table.add_column("docs", justify="right")
    table.add_column("bytes", justify="right")
    for enc in encoders:
        table.add_column(enc, justify="right")
    for s in sets:
        first = next(iter(results.values()))[s]
        table.add_row(
            s,
            str(first["docs"]),
            f"{first['bytes']:,}",
            *(f"{results[e][s]['bytes_per_token']:.2f}" if results[e][s]["tokens"] else "-" for e in encoders),
        )
    console.print(table)
    console.print(f"{elapsed:.1f} s")
    if args.json:
        atomic_write_json(
            args.json,
            {
                "date": datetime.date.today().isoformat(),
                "tokenizer": str(args.tokenizer),
                "tokenizer_fingerprint": tok.fingerprint,
                "data": [str(p) for p in args.data],
                "notes": str(args.notes),
                "val_fraction": args.val_fraction,
                "results": results,
                "skipped": skipped,
                "tiktoken": tiktoken.__version__,
            },
        )
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
