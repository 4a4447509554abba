"""Index and search speed: cold/incremental indexing of corpus/, query latency, FAISS HNSW at scale.

    python benchmarks/bench_index.py                 # everything (default encoder; minutes on 2 cores)
    python benchmarks/bench_index.py --skip-corpus --sizes 100000
    python benchmarks/bench_index.py --sizes 100000,1000000 --max-build-s 900

Prints a table per part and a final JSON line. Synthetic vectors are 384-d (mE5-small), drawn
around 2,000 random centres so that, like real embeddings, they have cluster structure (uniform
random vectors make every ANN index look bad); recall@10 is against exact search. A build that
exceeds --max-build-s stops adding vectors and reports the size it reached.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notes_rag.index_config import IndexConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "Czym jest perceptron?", "What is positional embedding?", "Jak działa mechanizm uwagi?",
    "How does BPE tokenization work?", "Ile parametrów ma GPT-3?", "What is fine-tuning?",
    "Co to jest okno kontekstowe?", "Which GPU do I need for a 70B model?", "Czym jest RAG?",
    "What does layer normalization do?", "Do czego służy softmax?", "How are embeddings learned?",
    "Jakie są rodziny architektur modeli językowych?", "What is a data loader sliding window?",
    "Czym jest zanurzenie tokenu?", "Who wrote Attention Is All You Need?", "Co to jest PEFT?",
    "What is the vocabulary size of GPT-2?", "Jak trenuje się model wstępnie?", "What is dropout?",
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def bench_corpus() -> dict:
    from notes_rag.encoder import load_encoder
    from notes_rag.indexer import update_index
    from notes_rag.retrieve import Retriever

    t0 = time.perf_counter()
    enc = load_encoder()
    out = {"encoder_load_s": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        shutil.copytree(REPO / "corpus", folder, ignore=shutil.ignore_patterns(".notes-rag"))
        cold = update_index(folder, None, enc)
        out |= {"cold_s": cold.seconds, "chunks": cold.chunks_total}
        note = sorted(folder.glob("*.txt"))[0]
        note.touch()
        out["touch_only_s"] = update_index(folder, None, enc).seconds  # same content: nothing to do
        note.write_text(note.read_text(encoding="utf-8") + "\n\nDopisana linijka.\n", encoding="utf-8")
        inc = update_index(folder, None, enc)
        out |= {"incremental_s": inc.seconds, "incremental_chunks": inc.chunks_embedded}
        r = Retriever(folder / ".notes-rag", encoder=enc)
        for mode in ("hybrid", "dense", "bm25"):
            r.search(QUERIES[0], mode=mode)  # warm-up
            ms = []
            for _ in range(3):
                for q in QUERIES:
                    t = time.perf_counter()
                    r.search(q, k=5, mode=mode)
                    ms.append((time.perf_counter() - t) * 1000)
            out[f"{mode}_ms_p50"], out[f"{mode}_ms_p95"] = pct(ms, 0.5), pct(ms, 0.95)
        t = time.perf_counter()
        for q in QUERIES:
            r.search_conversation([q, "A dlaczego?"], k=5)
        out["conversation_ms_mean"] = (time.perf_counter() - t) * 1000 / len(QUERIES)
    return out


def synthetic(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def bench_faiss(n: int, max_build_s: float, cfg: IndexConfig, dim: int = 384) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, dim), dtype=np.float32) / np.sqrt(dim) * 3
    index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = cfg.hnsw_ef_construction
    t0, added, batch = time.perf_counter(), 0, 50_000
    kept = []
    while added < n and time.perf_counter() - t0 < max_build_s:
        x = synthetic(min(batch, n - added), dim, rng, centres)
        index.add(x)
        kept.append(x[:200])
        added += len(x)
    build_s = time.perf_counter() - t0
    index.hnsw.efSearch = cfg.hnsw_ef_search
    queries = synthetic(200, dim, rng, centres)
    ms = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 10)
        ms.append((time.perf_counter() - t) * 1000)
    # recall@10 against exact search over the same vectors
    flat = faiss.IndexFlatIP(dim)
    flat.add(index.reconstruct_n(0, index.ntotal))
    _, exact = flat.search(queries[:100], 10)
    _, approx = index.search(queries[:100], 10)
    recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]))
    return {"n_target": n, "n_built": int(index.ntotal), "build_s": build_s, "ms_p50": pct(ms, 0.5),
            "ms_p95": pct(ms, 0.95), "recall@10": recall, "threads": faiss.omp_get_max_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-corpus", action="store_true")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--max-build-s", type=float, default=900)
    args = ap.parse_args()
    result = {}
    if not args.skip_corpus:
        result["corpus"] = c = bench_corpus()
        print(f"corpus/: {c['chunks']} chunks; cold index {c['cold_s']:.1f} s (+{c['encoder_load_s']:.1f} s encoder load);"
              f" touch only {c['touch_only_s']:.2f} s; one file edited {c['incremental_s']:.1f} s"
              f" ({c['incremental_chunks']} chunks re-embedded)")
        for mode in ("hybrid", "dense", "bm25"):
            print(f"  {mode:<7} query latency p50 {c[mode + '_ms_p50']:.1f} ms, p95 {c[mode + '_ms_p95']:.1f} ms")
        print(f"  conversation (2 turns) mean {c['conversation_ms_mean']:.1f} ms")
    cfg = IndexConfig()
    for n in (int(s) for s in args.sizes.split(",") if s):
        f = bench_faiss(n, args.max_build_s, cfg)
        result[f"faiss_{n}"] = f
        print(f"FAISS HNSW{cfg.hnsw_m} efSearch={cfg.hnsw_ef_search}: {f['n_built']:,}/{n:,} vectors built in"
              f" {f['build_s']:.0f} s; query p50 {f['ms_p50']:.2f} ms, p95 {f['ms_p95']:.2f} ms;"
              f" recall@10 {f['recall@10']:.3f} ({f['threads']} threads)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
