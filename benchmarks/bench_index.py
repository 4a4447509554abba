"""Index and search speed: cold/incremental indexing of corpus/, query latency, FAISS at scale.

    python benchmarks/bench_index.py                 # everything (default encoder; minutes on 2 cores)
    python benchmarks/bench_index.py --skip-corpus --sizes 100000
    python benchmarks/bench_index.py --skip-corpus --sizes 100000,1000000

Prints a table per part and a final JSON line. Synthetic vectors are 384-d (mE5-small), drawn
around 2,000 random unit centres with `--noise` Gaussian noise so that, like real embeddings,
they have cluster structure (uniform random vectors make every ANN index look bad). The index is
built by `index.store.build_dense`, the code `notes-rag index` runs (IVF above
`IndexConfig.approx_threshold`); recall@10 is against exact search.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notes_rag.index import store as index_store  # noqa: E402
from notes_rag.index.config import IndexConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "Czym jest perceptron?",
    "What is positional embedding?",
    "Jak działa mechanizm uwagi?",
    "How does BPE tokenization work?",
    "Ile parametrów ma GPT-3?",
    "What is fine-tuning?",
    "Co to jest okno kontekstowe?",
    "Which GPU do I need for a 70B model?",
    "Czym jest RAG?",
    "What does layer normalization do?",
    "Do czego służy softmax?",
    "How are embeddings learned?",
    "Jakie są rodziny architektur modeli językowych?",
    "What is a data loader sliding window?",
    "Czym jest zanurzenie tokenu?",
    "Who wrote Attention Is All You Need?",
    "Co to jest PEFT?",
    "What is the vocabulary size of GPT-2?",
    "Jak trenuje się model wstępnie?",
    "What is dropout?",
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def bench_corpus() -> dict:
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder
    from notes_rag.index.search import Retriever

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


def synthetic(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray, noise: float) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + noise / np.sqrt(dim) * rng.standard_normal(
        (n, dim), dtype=np.float32
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def bench_faiss(n: int, cfg: IndexConfig, noise: float, dim: int = 384) -> dict:
    """Build the dense index exactly as `notes-rag index` would for n vectors, then time queries."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.concatenate([synthetic(min(100_000, n - i), dim, rng, centres, noise) for i in range(0, n, 100_000)])
    ids = np.arange(n, dtype=np.int64) + 1
    t0 = time.perf_counter()
    index = index_store.build_dense(ids, vectors, cfg)
    build_s = time.perf_counter() - t0
    queries = synthetic(200, dim, rng, centres, noise)
    ms = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 10)
        ms.append((time.perf_counter() - t) * 1000)
    # recall@10 against exact search over the same vectors
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    _, exact = flat.search(queries[:100], 10)
    _, approx = index.search(queries[:100], 10)
    recall = float(np.mean([len(set(a - 1) & set(e)) / 10 for a, e in zip(approx, exact)]))
    kind = type(faiss.downcast_index(index.index)).__name__
    return {
        "n": n,
        "index": kind,
        "build_s": build_s,
        "ms_p50": pct(ms, 0.5),
        "ms_p95": pct(ms, 0.95),
        "recall@10": recall,
        "threads": faiss.omp_get_max_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-corpus", action="store_true")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument(
        "--noise",
        type=float,
        default=0.6,
        help="noise norm around each unit centre (0.6: cosine ~0.86 to the centre, like related passages"
        " under mE5; 3 makes the vectors nearly uniform, the worst case for any ANN index)",
    )
    args = ap.parse_args()
    result = {}
    if not args.skip_corpus:
        result["corpus"] = c = bench_corpus()
        print(
            f"corpus/: {c['chunks']} chunks; cold index {c['cold_s']:.1f} s"
            f" (+{c['encoder_load_s']:.1f} s encoder load);"
            f" touch only {c['touch_only_s']:.2f} s; one file edited {c['incremental_s']:.1f} s"
            f" ({c['incremental_chunks']} chunks re-embedded)"
        )
        for mode in ("hybrid", "dense", "bm25"):
            print(f"  {mode:<7} query latency p50 {c[mode + '_ms_p50']:.1f} ms, p95 {c[mode + '_ms_p95']:.1f} ms")
        print(f"  conversation (2 turns) mean {c['conversation_ms_mean']:.1f} ms")
    cfg = IndexConfig()
    for n in (int(s) for s in args.sizes.split(",") if s):
        f = bench_faiss(n, cfg, args.noise)
        result[f"faiss_{n}"] = f
        print(
            f"FAISS {f['index']} (nprobe {cfg.ivf_nprobe}): {n:,} vectors built in {f['build_s']:.1f} s;"
            f" query p50 {f['ms_p50']:.2f} ms, p95 {f['ms_p95']:.2f} ms; recall@10 {f['recall@10']:.3f}"
            f" ({f['threads']} threads)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
