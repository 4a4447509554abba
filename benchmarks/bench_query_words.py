"""The reranker's word signals at scale: `LexicalIndex.query_words` + `with_translations` and the
candidates' word holdings, as `Retriever.search` computes them for a hybrid search.

    python benchmarks/bench_query_words.py [--chunks 180000] [--repeat 5] [--json out.json]

Builds a BM25 index of `--chunks` generated chunks (bench_scale.py's Polish and English note
paragraphs, so a common word is in most chunks, as in the 10k-file folder) and times, per
question of bench_scale.QUERIES: the question's words with the chunks holding each, their
translations' chunks joined (the packaged lexicon), and for 30 candidate chunks which words each
holds, the rare words' chunks listed. No encoder: this is the part of a hybrid search that grew
with the index (docs/BENCHMARKS.md, "Index at scale").
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scale import QUERIES, note_text  # noqa: E402

from notes_rag.index.bilingual import Bilingual, with_translations  # noqa: E402
from notes_rag.index.lexical import LexicalIndex  # noqa: E402
from notes_rag.index.rerank import is_rare  # noqa: E402
from notes_rag.lang import detect_lang  # noqa: E402
from notes_rag.train.precision import cpu_model  # noqa: E402


def chunk_texts(n: int, seed: int = 0) -> list[str]:
    """`n` chunk-sized texts: the paragraphs and lists of generated notes."""
    rng, out, note = random.Random(seed), [], 0
    while len(out) < n:
        out += [p for p in note_text(rng, 20_000, note).split("\n\n") if p.strip()]
        note += 1
    return out[:n]


def signals(lexical: LexicalIndex, bilingual: Bilingual | None, question: str, candidates: list[int]):
    words = lexical.query_words(question)
    if bilingual is not None:
        words = with_translations(lexical, words, bilingual.translate(question, detect_lang(question)))
    holds = [w.chunks.holding(candidates) for w in words if w.chunks]  # as rerank.features
    rare = {c for w in words if is_rare(w) for c in w.chunks}
    return words, holds, rare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=180_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    t = time.perf_counter()
    texts = chunk_texts(args.chunks)
    lexical = LexicalIndex.build(list(range(len(texts))), texts)
    built = time.perf_counter() - t
    bilingual = Bilingual.load()
    rng = random.Random(1)
    times: dict[str, list[float]] = {q: [] for q in QUERIES}
    for _ in range(args.repeat):
        for q in QUERIES:
            candidates = rng.sample(range(len(texts)), 30)
            t = time.perf_counter()
            signals(lexical, bilingual, q, candidates)
            times[q].append(1000 * (time.perf_counter() - t))
    per_question = {q: statistics.median(v) for q, v in times.items()}
    all_ms = [x for v in times.values() for x in v]
    out = {
        "machine": cpu_model(),
        "chunks": len(texts),
        "build_s": round(built, 1),
        "p50_ms": round(float(np.percentile(all_ms, 50)), 2),
        "p95_ms": round(float(np.percentile(all_ms, 95)), 2),
        "per_question_p50_ms": {q: round(v, 2) for q, v in per_question.items()},
    }
    print(json.dumps(out, indent=1, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
