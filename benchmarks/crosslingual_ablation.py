"""Cross-lingual retrieval, measure by measure: each set searched with each measure on and off.

    python benchmarks/crosslingual_ablation.py [--sets dev,dev2,external] [--encoder-delta FILE]
        [--variants all] [--json runs/crosslingual/ablation.json] [--markdown table.md]

The measures of issue #23 on the search side, each a `RetrievalConfig` switch:

- candidates: both languages in the first stage (`per_language`, `per_language_rerank`);
- balanced dense: each language's cosines normalized apart before fusion (`dense_by_language`);
- translated coverage: the reranker's word features count translations (`translated_coverage`);
- lexicon:    the packaged lexicon induced from technical parallel text, against the
              Tatoeba-only one (`--tatoeba-lexicon`, built by `notes-rag lexicon --tatoeba-only`);
- reranker:   the linear reranker (`rerank`), on and off;
- encoder:    `--encoder-delta FILE` (an aligned encoder delta, index/encoder.py) gives every
              variant a second run with the delta applied, indexes in `--work`/enc-NAME/; the
              first run is the plain multilingual-e5-small (`$NOTES_RAG_ENCODER_DELTA=none`),
              whatever the release holds.

`--latency` instead searches each set's questions with "baseline" and "all" in turn, three
passes, and prints each one's p50 / p95 ms (a busy machine slows both alike).

Variants: "baseline" (everything of this issue off: Tatoeba lexicon, no per-language
candidates), "all" (everything on, the product default), and "all - X" for each measure X; the
share of a measure is what removing it costs, over the sum of those costs.

Groups per set: same-language and cross-lingual answerable questions (`eval.runner.question_kind`),
and "both-language topic": cross-lingual questions whose evidence note has a counterpart note in
the other language on the same lesson or book (`counterpart`, one rule for every set).
dev2 is also scored on its fit half and its test half (`eval.splits`). Retrieval only (no
model): hit@1, hit@5 of `search_conversation(turns, k=10)`, p50 latency.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_all import default_sets, ensure_external  # noqa: E402

from notes_rag.eval.all_sets import build_index, unavailable  # noqa: E402
from notes_rag.eval.matching import RETRIEVAL_DEPTH, evidence_files, first_hit_rank  # noqa: E402
from notes_rag.eval.qa_file import load_items  # noqa: E402
from notes_rag.eval.runner import question_kind  # noqa: E402
from notes_rag.eval.splits import halves  # noqa: E402
from notes_rag.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from notes_rag.index.config import RetrievalConfig  # noqa: E402
from notes_rag.index.search import Retriever  # noqa: E402

# The one "same topic in both languages" rule: two notes of different languages excerpt or
# summarize the same source. dev2's notes name their lesson in the file name (`pl_01_...`,
# `en_01_...`: eval_sets/dev2/SOURCES.md); corpus/ has no such names, so its sources are
# written here from the notes themselves: 000 says it is "oparta o książkę Build a Large
# Language Model - Sebastian Raschka", 003 is headed "Build a Large Language Model (From
# Scratch)"; the other three notes (001, 002, 004) are each their own source. The external
# corpus' notes are single kit articles: no note has a counterpart.
DEV_SOURCES = {"000_19438b7bc823741f.txt": "raschka-build-llm", "003_b68687d5cb2b3d2e.txt": "raschka-build-llm"}
_LESSON = re.compile(r"^(?:en|pl)_(\d+)_")


def source_of(file: str) -> str:
    """The lesson or book a note comes from (its own name when nothing else is known)."""
    name = Path(file).name
    m = _LESSON.match(name)
    return f"lesson-{m.group(1)}" if m else DEV_SOURCES.get(name, name)


def counterpart(files: list[str], file_lang: dict[str, str]) -> bool:
    """Whether a note of another language comes from the same source as one of `files`."""
    for f in files:
        others = {file_lang[g] for g in file_lang if g != f and source_of(g) == source_of(f)}
        if others - {file_lang.get(f)}:
            return True
    return False


def variants(tatoeba: Path) -> dict[str, dict]:
    """Variant name -> RetrievalConfig overrides."""
    off = {
        "candidates": {"per_language": 0, "per_language_rerank": 0},
        "balanced dense": {"dense_by_language": False},
        "translated coverage": {"translated_coverage": False},
        "lexicon": {"lexicon": str(tatoeba)},
    }
    out = {"baseline": {k: v for changes in off.values() for k, v in changes.items()}, "all": {}}
    out.update({f"all - {name}": changes for name, changes in off.items()})
    out["all - reranker"] = {"rerank": False}
    return out


def measure(index: Path, items, cfg: RetrievalConfig, fit_ids: frozenset[str] = frozenset()) -> dict:
    """hit@1 / hit@5 per group and the p50 search latency over the answerable items; with
    `fit_ids` (a split set) also over its fit half and its test half."""
    r = Retriever.open(index, cfg=cfg)
    try:
        chunks, file_lang = r.chunks(), r.file_langs()
        ranks: dict[str, list] = {}
        latency = []
        r.search("warm up")  # the first search loads the lexicon and warms the encoder
        for item in items:
            if not item.answerable:
                continue
            t0 = time.perf_counter()
            res = r.search_conversation(item.turns, k=RETRIEVAL_DEPTH)
            latency.append(time.perf_counter() - t0)
            rank = first_hit_rank(item.evidence, [h.text for h in res.hits])
            files = evidence_files(item.evidence, chunks)
            kind = question_kind(item, files, file_lang)
            groups = ["all", kind] + ([("fit half" if item.id in fit_ids else "test half")] if fit_ids else [])
            if kind == "cross-lingual" and counterpart(files, file_lang):
                groups.append("both-language topic")
            for g in groups:
                ranks.setdefault(g, []).append(rank)
    finally:
        r.close()
    out = {
        g: {
            "n": len(rs),
            "hit@1": sum(x == 1 for x in rs) / len(rs),
            "hit@5": sum(x is not None and x <= 5 for x in rs) / len(rs),
        }
        for g, rs in ranks.items()
    }
    out["latency_p50_ms"] = 1000 * statistics.median(latency)
    return out


def interleaved_latency(index: Path, items, configs: dict[str, RetrievalConfig], passes: int = 3) -> dict:
    """p50 / p95 search ms of each config, searched question by question in turn in one process,
    so that a busy machine slows them alike."""
    rs = {name: Retriever.open(index, cfg=cfg) for name, cfg in configs.items()}
    times: dict[str, list[float]] = {name: [] for name in rs}
    try:
        for r in rs.values():
            r.search("warm up")
        for _ in range(passes):
            for item in (i for i in items if i.answerable):
                for name, r in rs.items():
                    t0 = time.perf_counter()
                    r.search_conversation(item.turns, k=RETRIEVAL_DEPTH)
                    times[name].append(1000 * (time.perf_counter() - t0))
    finally:
        for r in rs.values():
            r.close()
    return {
        name: {"p50": statistics.median(t), "p95": statistics.quantiles(t, n=20)[-1], "n": len(t)}
        for name, t in times.items()
    }


GROUPS = ("all", "same-language", "cross-lingual", "both-language topic", "fit half", "test half")


def markdown(result: dict) -> str:
    lines = [
        "| set | variant | " + " | ".join(f"{g} hit@1 / hit@5 (n)" for g in GROUPS) + " | p50 ms |",
        "| --- | --- |" + " ---: |" * (len(GROUPS) + 1),
    ]
    for set_name, by_variant in result.items():
        for variant, m in by_variant.items():
            cells = [f"{m[g]['hit@1']:.2f} / {m[g]['hit@5']:.2f} ({m[g]['n']})" if g in m else "–" for g in GROUPS]
            lines.append(f"| {set_name} | {variant} | " + " | ".join(cells) + f" | {m['latency_p50_ms']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "eval_all", help="indexes (as eval_all.py)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "sft" / "val.jsonl", help="kit held-out split")
    ap.add_argument("--sets", default="dev,dev2,external")
    ap.add_argument("--variants", default="all", help="comma-separated variant names, or all")
    ap.add_argument("--encoder-delta", type=Path, default=None, help="also run every variant with this delta")
    ap.add_argument("--tatoeba-lexicon", type=Path, default=ROOT / "runs" / "crosslingual" / "lexicon-tatoeba.tsv")
    ap.add_argument("--latency", action="store_true", help="only: baseline and all searched interleaved, p50/p95")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()

    wanted = args.sets.split(",")
    if "external" in wanted:
        ensure_external(args.work, args.data)
    all_variants = variants(args.tatoeba_lexicon)
    chosen = all_variants if args.variants == "all" else {v: all_variants[v] for v in args.variants.split(",")}
    if args.latency:
        os.environ.setdefault("NOTES_RAG_ENCODER_DELTA", "none")
        from notes_rag.index.encoder import load_encoder

        encoder = load_encoder(None)
        for s in default_sets(args.work):
            if s.name in wanted and not unavailable(s):
                configs = {v: dataclasses.replace(RetrievalConfig(), **all_variants[v]) for v in ("baseline", "all")}
                print(s.name, interleaved_latency(build_index(s, args.work, encoder), load_items(s.qa), configs))
        return
    runs = [("none", args.work, "")]
    if args.encoder_delta:
        delta = args.encoder_delta.resolve()
        runs.append((str(delta), args.work / f"enc-{delta.stem}", f" (delta {delta.stem})"))
    from notes_rag.index.encoder import load_encoder
    from notes_rag.index.encoder_cache import DELTA_ENV

    result: dict = {}
    for delta_env, work, suffix in runs:
        os.environ[DELTA_ENV] = delta_env  # read by both the index-time and the query-time encoder
        encoder = load_encoder(None)
        for s in default_sets(args.work):
            if s.name not in wanted or unavailable(s):
                continue
            index = build_index(s, work, encoder)
            items = load_items(s.qa)
            fit_ids = frozenset(i.id for i in halves(items)[0]) if s.split else frozenset()
            for name, changes in chosen.items():
                m = measure(index, items, dataclasses.replace(RetrievalConfig(), **changes), fit_ids)
                result.setdefault(s.name + suffix, {})[name] = m
                print(s.name + suffix, name, {g: (v["hit@1"], v["hit@5"], v["n"]) for g, v in m.items() if g in GROUPS})
    table = markdown(result)
    print(table)
    if args.json:
        atomic_write_json(args.json, result)
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")


if __name__ == "__main__":
    main()
