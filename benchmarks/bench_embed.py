"""Embedding speed of the index-time encoder paths, against sentence-transformers fp32 in the same run.

    python benchmarks/bench_embed.py                       # 64/256/512 tokens, 3 interleaved rounds
    python benchmarks/bench_embed.py --lengths 256 --rounds 5 --passages 48
    python benchmarks/bench_embed.py --index               # also: index corpus/ --rebuild, profiled
    python benchmarks/bench_embed.py --guard runs/eval31-fast runs/eval31-ref   # stored vectors, cosines

Candidates, each on the same passages (corpus/'s text cut to exactly N encoder tokens, "passage: "
and the special tokens included) and the same questions (eval_sets/dev2's):

- `st-fp32`: the peer, `SentenceTransformer(folder).encode(batch_size=32)`, fp32;
- `today`: index/encoder.py's torch path as `index` ran it before the fast path
  (`$NOTES_RAG_FAST_ENCODER=off`, the memory-mapped word table, 32 passages per call);
- `torch-bf16`: the same under torch's bf16 autocast (the fallback on CPUs with native bf16);
- `torch-int8`: torch's dynamic int8 quantization of the Linear layers;
- `ort-fp32`: the ONNX export, fused by ONNX Runtime's transformer optimizer, fp32;
- `ort-int8-all`: that, dynamic int8 per-channel on every matrix product;
- `ort-int8` (shipped, index/fast_encoder.py): int8 except the FFN's second layer (MatMulNBits 8-bit).

The ONNX candidates batch by length to a token budget (fast_encoder.batches_by_length). Rounds
interleave the candidates so a change of load hits all of them; the table gives the median over
rounds of passages/s and of the ratio to `st-fp32` in the same round, and the least cosine to
`st-fp32`'s vectors. Questions: one per call (as a search encodes them), with the numpy query
encoder (index/bert_encoder.py, what `ask`/`search` use) beside them. A final JSON line has it all.
`--index` also times `update_index(corpus copy, rebuild=True)` with the fast path and with
today's path against `st-fp32` encoding the same chunks' text, and prints a cProfile summary of the
fast one. Threads: torch.set_num_threads(--threads), ONNX Runtime intra-op threads the same.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NOTES_RAG_FAST_ENCODER", "auto")

import torch  # noqa: E402

from notes_rag.index import encoder as E  # noqa: E402
from notes_rag.index import fast_encoder as F  # noqa: E402
from notes_rag.index.encoder_cache import ensure_encoder  # noqa: E402


def machine() -> dict:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    flags = open("/proc/cpuinfo").read()
    return {
        "cpu": model,
        "cores": F.usable_cores(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "load": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def passages_of(tokenizer, length: int, n: int) -> list[str]:
    """`n` pieces of corpus/'s text, each exactly `length` tokens with "passage: " and specials."""
    words = " ".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "corpus").glob("*.txt"))).split()
    out, start = [], 0
    while len(out) < n:
        piece, lo, hi = [], start, start
        while True:
            hi += 8
            text = " ".join(words[lo % len(words) : lo % len(words) + (hi - lo)])
            if len(tokenizer("passage: " + text)["input_ids"]) > length:
                break
            piece = text
        ids = tokenizer("passage: " + text)["input_ids"][1 : length - 1]  # trim to exactly `length`
        out.append(tokenizer.decode(ids)[len("passage: ") :].strip() if ids else piece)
        start = hi + 17
    return out


def questions() -> list[str]:
    rows = [json.loads(ln) for ln in (REPO / "eval_sets/dev2/qa.jsonl").read_text(encoding="utf-8").splitlines() if ln]
    return [r["question"] for r in rows if r.get("question")][:40]


def onnx_variants(folder: Path, work: Path) -> dict[str, Path]:
    """ort-fp32 and ort-int8-all built here (the shipped ort-int8 comes from the cache)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = json.loads((folder / "config.json").read_text())
    (work / "fp32").mkdir(parents=True)
    (work / "int8-all").mkdir()
    with F._quiet():
        F._export_onnx(folder, work / "raw.onnx")
        F._optimize(work / "raw.onnx", work / "fp32" / "model.onnx", config)
        quantize_dynamic(
            str(work / "fp32" / "model.onnx"),
            str(work / "int8-all" / "model.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {"ort-fp32": work / "fp32", "ort-int8-all": work / "int8-all"}


def candidates(folder: Path, threads: int, work: Path) -> dict:
    from sentence_transformers import SentenceTransformer

    os.environ["NOTES_RAG_FAST_ENCODER"] = "off"
    today = E.load_encoder()
    bf16 = E.load_encoder()
    bf16.notes_rag_bf16 = True
    q8 = E.load_encoder()
    torch.ao.quantization.quantize_dynamic(q8[0].auto_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    os.environ["NOTES_RAG_FAST_ENCODER"] = "auto"
    fast = E.load_encoder()
    assert isinstance(getattr(fast, "notes_rag_fast", None), F.OnnxEncoder), "the fast path did not attach"
    st = SentenceTransformer(str(folder), device="cpu", local_files_only=True)

    def st_encode(texts, prompt_name):
        return st.encode(
            texts, batch_size=32, prompt_name=prompt_name, normalize_embeddings=True, show_progress_bar=False
        )

    def per_call(encoder, n=32):
        return lambda texts, prompt_name: np.concatenate(
            [E.encode_passages(encoder, texts[i : i + n]) for i in range(0, len(texts), n)]
        )

    out = {"st-fp32": st_encode, "today": per_call(today), "torch-bf16": per_call(bf16), "torch-int8": per_call(q8)}
    for name, d in onnx_variants(folder, work).items():
        onnx_encoder = F.OnnxEncoder(d, folder, fast.tokenizer, int(fast.max_seq_length), threads)
        out[name] = lambda texts, prompt_name, o=onnx_encoder: o.encode(texts, "passage: ")
    out["ort-int8"] = lambda texts, prompt_name: E.encode_passages(fast, texts)
    return out, {"st": st, "today": today, "fast": fast}


def bench_lengths(cands: dict, tokenizer, lengths, n, rounds) -> dict:
    results = {}
    for length in lengths:
        texts = passages_of(tokenizer, length, n if length < 512 else max(8, n // 2))
        ref = cands["st-fp32"](texts, "passage")
        for fn in cands.values():  # warm-up
            fn(texts[:4], "passage")
        rates = {k: [] for k in cands}
        ratios = {k: [] for k in cands}
        cos = {}
        for r in range(rounds):
            seconds = {}
            for name, fn in cands.items():
                t = time.perf_counter()
                v = fn(texts, "passage")
                seconds[name] = time.perf_counter() - t
                if r == 0:
                    cos[name] = float((np.asarray(v) * ref).sum(axis=1).min())
            for name in cands:
                rates[name].append(len(texts) / seconds[name])
                ratios[name].append(seconds["st-fp32"] / seconds[name])
        results[length] = {
            name: {
                "passages_per_s": round(statistics.median(rates[name]), 2),
                "x_st_fp32": round(statistics.median(ratios[name]), 2),
                "x_today": round(statistics.median(ratios[name]) / statistics.median(ratios["today"]), 2),
                "min_cos": round(cos[name], 5),
            }
            for name in cands
        }
        print(f"\n{length} tokens, {len(texts)} passages, {rounds} rounds, load {os.getloadavg()[0]:.1f}")
        print(f"{'candidate':14s} {'passages/s':>10s} {'x st-fp32':>9s} {'x today':>8s} {'min cos':>8s}")
        for name, row in results[length].items():
            rate, x_st, x_today, cos_min = (row[k] for k in ("passages_per_s", "x_st_fp32", "x_today", "min_cos"))
            print(f"{name:14s} {rate:10.2f} {x_st:9.2f} {x_today:8.2f} {cos_min:8.5f}")
    return results


def bench_questions(encoders: dict, rounds: int) -> dict:
    from notes_rag.index.bert_encoder import BertEncoder

    qs = questions()
    numpy_bert = BertEncoder(ensure_encoder())
    ways = {
        "st-fp32": lambda q: encoders["st"].encode([q], prompt_name="query", normalize_embeddings=True),
        "today": lambda q: E.encode_queries(encoders["today"], q),
        "ort-int8": lambda q: E.encode_queries(encoders["fast"], q),
        "numpy (query time)": lambda q: E.encode_queries(numpy_bert, q),
    }
    rates = {k: [] for k in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            t = time.perf_counter()
            for q in qs:
                fn(q)
            rates[name].append(len(qs) / (time.perf_counter() - t))
    out = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    print(f"\nquestions, one per call ({len(qs)} of dev2), questions/s:")
    for k, v in out.items():
        print(f"  {k:20s} {v:8.1f}")
    return out


def bench_index(encoders: dict, rounds: int) -> dict:
    """update_index(corpus copy, rebuild=True): fast vs today, against st-fp32 on the same chunks."""
    from notes_rag.index.build import update_index

    work = Path(tempfile.mkdtemp(prefix="bench-embed-index-"))
    folder = work / "corpus"
    shutil.copytree(REPO / "corpus", folder, ignore=shutil.ignore_patterns(".notes-rag"))
    texts = _embed_texts(folder, encoders["fast"])
    rows = {"fast": [], "today": [], "st-fp32 encode": []}
    for _ in range(rounds):
        for name in ("fast", "today"):
            t = time.perf_counter()
            update_index(folder, None, encoders[name], rebuild=True)
            rows[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        encoders["st"].encode(texts, batch_size=32, prompt_name="passage", normalize_embeddings=True)
        rows["st-fp32 encode"].append(time.perf_counter() - t)
    prof = cProfile.Profile()
    prof.enable()
    update_index(folder, None, encoders["fast"], rebuild=True)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
    shutil.rmtree(work, ignore_errors=True)
    out = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    out["chunks"] = len(texts)
    print(f"\nindex corpus/ --rebuild in process ({len(texts)} chunks), seconds (median of {rounds}):")
    for k, v in out.items():
        print(f"  {k:16s} {v}")
    print("\nprofile of the fast rebuild (cumulative):\n" + "\n".join(s.getvalue().splitlines()[:45]))
    return out


def _embed_texts(folder: Path, encoder) -> list[str]:
    """The text `index` embeds for each chunk of `folder` (heading path included)."""
    from notes_rag.index.build import token_counter
    from notes_rag.index.config import IndexConfig
    from notes_rag.index.documents import chunk_document
    from notes_rag.index.notes import scan_notes

    count, limit = token_counter(encoder)
    notes, _ = scan_notes(folder, folder / ".notes-rag")
    return [c.embed_text for n in notes for c in chunk_document(n.doc, n.path, count, limit, IndexConfig())]


def guard(fast_work: Path, ref_work: Path) -> dict:
    """Cosines between the vectors two eval_all.py work folders' indexes stored for the same
    chunks (one built with the fast path, one with `$NOTES_RAG_FAST_ENCODER=off`)."""
    from contextlib import closing

    from notes_rag.index import store

    def vectors(index: Path) -> dict:
        with closing(store.open_db(store.current_generation(index) / "chunks.sqlite")) as conn:
            rows = conn.execute(
                "SELECT c.file, c.line_start, c.line_end, c.text, v.vector"
                " FROM chunks c JOIN vectors v ON v.chunk_id = c.id"
            )
            return {tuple(r[:4]): np.frombuffer(r[4], np.float32) for r in rows}

    out = {}
    for index in sorted(fast_work.glob("*/index")):
        name = index.parent.name
        a, b = vectors(index), vectors(ref_work / name / "index")
        keys = sorted(set(a) & set(b))
        cos = np.array([float(a[k] @ b[k]) for k in keys])
        out[name] = {
            "chunks": len(keys),
            "unmatched": len(set(a) ^ set(b)),
            "min": round(float(cos.min()), 5),
            "p1": round(float(np.percentile(cos, 1)), 5),
            "mean": round(float(cos.mean()), 5),
        }
        print(name, out[name])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="64,256,512")
    ap.add_argument("--passages", type=int, default=48, help="passages per length (half at 512)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=F.usable_cores())
    ap.add_argument("--index", action="store_true", help="also time and profile index corpus/ --rebuild")
    ap.add_argument("--skip-lengths", action="store_true")
    ap.add_argument("--guard", nargs=2, type=Path, metavar=("FAST_WORK", "REF_WORK"), help="compare two eval_all works")
    args = ap.parse_args()
    if args.guard:
        print(json.dumps({"guard": guard(*args.guard)}))
        return
    torch.set_num_threads(args.threads)
    folder = ensure_encoder()
    info = machine()
    info["threads"] = args.threads
    print(json.dumps(info))
    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        cands, encoders = candidates(folder, args.threads, work)
        result = {"machine": info}
        if not args.skip_lengths:
            lengths = [int(x) for x in args.lengths.split(",")]
            result["passages"] = bench_lengths(cands, encoders["st"].tokenizer, lengths, args.passages, args.rounds)
            result["questions_per_s"] = bench_questions(encoders, args.rounds)
        if args.index:
            result["index_rebuild_s"] = bench_index(encoders, args.rounds)
        result["load_after"] = os.getloadavg()
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
