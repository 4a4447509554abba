"""Scale: index a generated 100 MB notes folder (10k files), its peak memory and query latency.

    python benchmarks/bench_scale.py --json docs/benchmarks/bench_scale.json   # full (~30 min on 2 cores)
    python benchmarks/bench_scale.py --files 200 --big-note-mb 2 --sample 32  # smoke test (~2 min)

Embedding 100 MB with the real multilingual-e5-small on 2 cores takes hours, so the run is split:
- the real encoder's passage throughput is measured on a sample of the folder's own chunks and
  extrapolated to all of them;
- the whole folder is indexed with a fast stand-in encoder that has e5's tokenizer (so the
  chunks are the same), its 512-token limit and its 384-dimensional output, but one 32-wide
  layer: the chunking, SQLite, FAISS (IVF above 50k chunks) and BM25 work, the memory they take
  and the search latency are the real ones; only the embedding arithmetic is not;
- query latency is measured with the stand-in, and again with the real query encoder
  (index/bert_encoder.py, what `search`/`ask` run) searching the stand-in's index (its vectors
  are meaningless to e5, its timing is not);
- `--queries-only --keep DIR` times the searches again on a folder kept by an earlier run;
- a single note of `--big-note-mb` is chunked alone (chunker time and memory growth).
Indexing and the big note run in child processes, so each peak RSS is that job's own.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS_PL = (
    "sieć neuronowa uczy się wag na podstawie danych model neuronu warstwa gradient spadek funkcja straty "
    "mechanizm uwagi zapytanie klucz wartość tokenizacja słownik osadzenia pozycyjne dekoder koder trening "
    "walidacja przeuczenie regularyzacja dropout normalizacja wsadowa optymalizator tempo uczenia"
).split()
WORDS_EN = (
    "the transformer uses self attention to mix information between tokens in a sequence embeddings map "
    "token ids to vectors positional encodings add order a tokenizer splits text into pieces gradient descent "
    "minimizes the loss learning rate schedule warmup cosine decay batch normalization residual connection"
).split()
QUERIES = [
    "Ile kosztował trening modelu?",
    "What does self attention mix between tokens?",
    "mechanizm uwagi zapytanie klucz",
    "positional encodings add order",
    "learning rate warmup cosine decay",
    "Czym jest przeuczenie i jak mu zapobiega dropout?",
    "residual connection batch normalization",
    "tokenizer splits text into pieces",
]


def note_text(rng: random.Random, size: int, n: int) -> str:
    """A markdown note of about `size` bytes: headings, paragraphs and lists in Polish or English,
    with a rare term of its own (`term{n}`) so BM25 has needles to find."""
    words = WORDS_PL if n % 2 else WORDS_EN
    parts = [f"# Note {n}: {' '.join(rng.choices(words, k=3))}\n\n"]
    total = len(parts[0])
    while total < size:
        r = rng.random()
        if r < 0.1:
            part = f"## {' '.join(rng.choices(words, k=4)).capitalize()}\n\n"
        elif r < 0.25:
            part = "".join(f"- {' '.join(rng.choices(words, k=rng.randint(4, 12)))}\n" for _ in range(4)) + "\n"
        else:
            sentences = [" ".join(rng.choices(words, k=rng.randint(8, 20))).capitalize() + "." for _ in range(4)]
            part = " ".join(sentences) + (f" term{n}" if rng.random() < 0.05 else "") + "\n\n"
        parts.append(part)
        total += len(part.encode())
    return "".join(parts)


def generate_folder(folder: Path, files: int, mb: float, seed: int = 0) -> int:
    """`files` notes totalling about `mb` MB in 100 subfolders; the bytes written."""
    rng = random.Random(seed)
    size = int(mb * 1e6 / files)
    written = 0
    for n in range(files):
        path = folder / f"course{n % 100:02d}" / f"note{n:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = note_text(rng, size, n).encode()
        path.write_bytes(data)
        written += len(data)
    return written


def build_standin_encoder(out: Path, e5: Path) -> Path:
    """e5's tokenizer, 512-token limit, prompts and 384-d normalized output over one 32-wide
    random layer: chunks and index sizes as with e5, embedding ~100x cheaper."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as st
    from transformers import AutoTokenizer, BertConfig, BertModel

    raw = out / "raw"
    tok = AutoTokenizer.from_pretrained(str(e5))
    torch.manual_seed(0)
    cfg = json.loads((e5 / "config.json").read_text())
    bert = BertModel(
        BertConfig(
            vocab_size=cfg["vocab_size"],
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=cfg["max_position_embeddings"],
            pad_token_id=cfg["pad_token_id"],
        ),
        add_pooling_layer=False,
    )
    bert.save_pretrained(raw)
    tok.save_pretrained(raw)
    transformer = st.Transformer(str(raw), max_seq_length=512)
    pooling = st.Pooling(32, pooling_mode="mean")
    dense = st.Dense(32, 384, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(
        modules=[transformer, pooling, dense, st.Normalize()],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    model.save(str(out / "st"))
    return out / "st"


CHILD_INDEX = """
import json, resource, sys, time
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
folder, encoder, log = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
samples = []
def progress(done, total):
    samples.append((time.perf_counter() - t0, done, total))
report = update_index(folder, None, load_encoder(encoder), encoder, on_progress=progress)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump({"seconds": time.perf_counter() - t0, "index_seconds": report.seconds, "chunks": report.chunks_total,
           "peak_rss_mb": peak, "progress": samples[:: max(1, len(samples) // 200)] + samples[-1:]}, open(log, "w"))
"""

CHILD_BIG_NOTE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from bench_scale import note_text
import random
from notes_rag.index.build import token_counter
from notes_rag.index.chunker import chunk_note
from notes_rag.index.encoder import load_encoder
count, limit = token_counter(load_encoder(sys.argv[1]))
text = note_text(random.Random(1), int(float(sys.argv[2]) * 1e6), 1)
rss = lambda: int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
before = rss()
t0 = time.perf_counter()
chunks = chunk_note(text, "big.md", count, limit)
print(json.dumps({"mb": len(text.encode()) / 1e6, "chunks": len(chunks), "seconds": time.perf_counter() - t0,
                  "rss_before_mb": before, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    return out.stdout


def eta_accuracy(progress: list) -> dict:
    """What the progress bar's ETA said at 10/25/50% of the chunks (rich's estimate: elapsed /
    done x (total - done), with the running total estimate) against the real remaining time."""
    end = progress[-1][0]
    out = {}
    for frac in (0.1, 0.25, 0.5):
        t, done, total = next(p for p in progress if p[1] >= frac * progress[-1][1])
        out[f"{int(frac * 100)}%"] = {"eta_s": round(t / done * (total - done), 1), "actual_s": round(end - t, 1)}
    return out


def real_encoder_rate(texts: list[str]) -> dict:
    from notes_rag.index.encoder import encode_passages, encode_queries, load_encoder, load_query_encoder

    enc = load_encoder()
    encode_passages(enc, texts[:8])  # warm-up
    t0 = time.perf_counter()
    encode_passages(enc, texts)
    rate = len(texts) / (time.perf_counter() - t0)
    qenc = load_query_encoder()
    encode_queries(qenc, QUERIES[:2])
    times = []
    for q in QUERIES * 3:
        t = time.perf_counter()
        encode_queries(qenc, [q])
        times.append((time.perf_counter() - t) * 1000)
    return {"passages_per_s": rate, "query_encode_ms_p50": statistics.median(times)}


def _search_times(r, mode: str) -> dict:
    r.search(QUERIES[0], k=5, mode=mode)  # warm-up
    times = []
    for q in QUERIES * 3:
        t = time.perf_counter()
        r.search(q, k=5, mode=mode)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}


def query_latency(index_dir: Path, encoder: Path) -> dict:
    import notes_rag.index.search as search
    from notes_rag.index import integrity
    from notes_rag.index.encoder import encode_queries, load_encoder, load_query_encoder
    from notes_rag.index.search import Retriever
    from notes_rag.index.store import current_generation

    enc = load_encoder(encoder)
    gen = current_generation(index_dir)
    t0 = time.perf_counter()
    assert not integrity.damage(gen)  # what every open checks: sizes and mtimes
    out = {"open_check_ms": (time.perf_counter() - t0) * 1000}
    t0 = time.perf_counter()
    assert not integrity.check_generation(gen)  # what `index` checks: every file hashed
    out["full_check_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = Retriever(index_dir, encoder=enc)
    out |= {"open_s": time.perf_counter() - t0, "dense_index": type(r.dense.index).__name__}
    for mode in ("hybrid", "dense", "bm25"):
        out[mode] = _search_times(r, mode)
    times = []
    for q in QUERIES * 3:  # the stand-in's own query encoding, to subtract
        t = time.perf_counter()
        encode_queries(enc, [q])
        times.append((time.perf_counter() - t) * 1000)
    out["standin_query_encode_ms_p50"] = statistics.median(times)
    # needles: a note's own rare term must come back from BM25 at rank 1
    found = sum(r.search(f"term{n}", k=1, mode="bm25").hits[:1] != [] for n in range(0, 200, 7))
    out["rare_term_found"] = f"{found}/{len(range(0, 200, 7))}"
    r.close()
    # The product's query encoder (e5 in numpy) on the same index: its id differs from the
    # stand-in's, which the retriever refuses, so the check is bypassed for timing only.
    e5 = load_query_encoder(None)
    check, search.encoder_id = search.encoder_id, lambda _: r.meta["encoder"]
    try:
        r = Retriever(index_dir, encoder=e5)
    finally:
        search.encoder_id = check
    out["e5_query"] = {mode: _search_times(r, mode) for mode in ("hybrid", "dense", "bm25")}
    r.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mb", type=float, default=100.0, help="Total size of the generated folder.")
    ap.add_argument("--big-note-mb", type=float, default=100.0, help="Size of the single note chunked alone.")
    ap.add_argument("--sample", type=int, default=256, help="Chunks embedded with the real encoder.")
    ap.add_argument("--keep", type=Path, default=None, help="Build in this folder and keep it.")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--queries-only", action="store_true", help="time the searches on the --keep folder again")
    args = ap.parse_args()
    if args.queries_only:
        if args.keep is None or not (args.keep / "standin" / "st").is_dir():
            raise SystemExit("--queries-only needs --keep DIR of an earlier run")
        print(json.dumps(query_latency(args.keep / "notes" / ".notes-rag", args.keep / "standin" / "st"), indent=1))
        return

    from notes_rag.index.encoder_cache import ensure_default_model
    from notes_rag.train.precision import cpu_model

    e5 = ensure_default_model()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu_model()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "files": args.files,
    }
    try:
        folder = root / "notes"
        t0 = time.perf_counter()
        result["bytes"] = generate_folder(folder, args.files, args.mb)
        result["generate_s"] = time.perf_counter() - t0
        standin = build_standin_encoder(root / "standin", e5)
        print(f"generated {result['bytes'] / 1e6:.1f} MB in {args.files} files; indexing with the stand-in...")
        run_child(CHILD_INDEX, str(folder), str(standin), str(root / "index.json"))
        result["index"] = json.loads((root / "index.json").read_text())
        result["index"]["eta"] = eta_accuracy(result["index"].pop("progress"))
        result["index_size_mb"] = sum(p.stat().st_size for p in (folder / ".notes-rag").rglob("*") if p.is_file()) / 1e6
        print(f"indexed: {json.dumps(result['index'])}")
        result["query"] = query_latency(folder / ".notes-rag", standin)
        print(f"queries: {json.dumps(result['query'])}")
        from notes_rag.index.store import current_generation, open_db

        conn = open_db(current_generation(folder / ".notes-rag") / "chunks.sqlite")
        rows = conn.execute("SELECT heading_path, text FROM chunks ORDER BY random() LIMIT ?", (args.sample,))
        from notes_rag.index.chunker import embed_text

        sample = [embed_text(tuple(json.loads(hp)), t) for hp, t in rows]
        conn.close()
        real = real_encoder_rate(sample)
        real["extrapolated_embed_h"] = result["index"]["chunks"] / real["passages_per_s"] / 3600
        result["real_encoder"] = real
        print(f"real encoder: {json.dumps(real)}")
        if args.big_note_mb > 0:
            out = run_child(CHILD_BIG_NOTE, str(standin), str(args.big_note_mb), str(Path(__file__).parent))
            result["big_note"] = json.loads(out)
            print(f"big note: {out.strip()}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    q = result["query"]
    print("\n| measure | value |\n| --- | --- |")
    print(f"| folder | {result['bytes'] / 1e6:.1f} MB, {args.files:,} files -> {result['index']['chunks']:,} chunks |")
    print(f"| index time (stand-in encoder) | {result['index']['seconds']:.0f} s |")
    print(f"| peak RSS of the index run | {result['index']['peak_rss_mb']:.0f} MB |")
    for mode in ("hybrid", "dense", "bm25"):
        print(f"| {mode} query p50 / p95 | {q[mode]['p50_ms']:.1f} / {q[mode]['p95_ms']:.1f} ms |")
    for mode in ("hybrid", "dense", "bm25"):
        e5 = q["e5_query"][mode]
        print(f"| {mode} query with e5's query encoder p50 / p95 | {e5['p50_ms']:.1f} / {e5['p95_ms']:.1f} ms |")
    print(f"| real e5 query encoding p50 | {result['real_encoder']['query_encode_ms_p50']:.1f} ms |")
    print(f"| real e5 passages/s | {result['real_encoder']['passages_per_s']:.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"children's max RSS: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
