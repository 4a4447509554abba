"""The index-time encoder at the machine's speed: the same model run by ONNX Runtime in int8.

`attach(encoder, folder)` gives a sentence-transformers encoder from `load_encoder()` a faster
way to compute its own vectors; `encode_passages` / `encode_queries` (index/encoder.py) use it
when it is there, so every caller gains without a change. Chosen by measurement
(benchmarks/bench_embed.py, docs/BENCHMARKS.md "Embedding at the speed of the hardware"):

- the folder's BertModel (the aligned delta already merged into it: encoder_cache built it) is
  exported to ONNX with the word vectors as its input, so e5's 250k x 384 word table stays out
  of the graph and is read from model.safetensors as rows are needed (as today's torch path
  does, index/mapped_words.py);
- ONNX Runtime's transformer optimizer fuses attention, bias + GELU and skip + LayerNorm;
- matrix products in int8 with dynamic activation scales: per-channel int8 weights for the
  attention and the first FFN layer; the second FFN layer (its input, after GELU, is where a
  per-tensor activation scale loses most: cosine 0.993 to fp32 with it) takes 8-bit weights with
  int8 activations scaled per block of 32 (MatMulNBits, accuracy level 4): least cosine 0.9969
  over dev, dev2 and external's 882 chunks;
- passages sorted by token count and packed to a budget of padded tokens per run; one
  tokenizer call for all texts; ONNX Runtime's threads = the cores this process may use, not
  spinning while they wait (the cores are shared).

The export is built once per encoder folder into the cache, beside the folder
(`<encoder_id>-onnx-int8-r<RECIPE>`), under a lock and atomically, and checked against the torch
model on a few sentences before it is kept (cosine >= GUARD). `$NOTES_RAG_FAST_ENCODER`: `auto`
(default) uses it when it can; `bf16` skips it (torch, bf16 autocast where the CPU has native
bf16); `off` is the reference torch fp32 path. When it cannot be used (onnxruntime not
installed, a model it does not compute) one line says why and torch embeds, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from notes_rag.index.bert_encoder import table_rows, unsupported
from notes_rag.index.encoder_cache import _folder_files, _locked_build, _replace_folder, cache_root, encoder_id

log = logging.getLogger(__name__)

RECIPE = 1  # bump when the export, optimization or quantization changes: caches rebuild
FAST_ENV = "NOTES_RAG_FAST_ENCODER"
GUARD = 0.995  # least cosine to the fp32 vectors a fast path may give
TOKEN_BUDGET = 4096  # padded tokens per ONNX Runtime run (docs/BENCHMARKS.md: padding against run size)
MAX_ROWS = 64
MANIFEST = "notes-rag-fast.json"
_WORDS = ("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight")
_CHECK_TEXTS = [
    "Mechanizm uwagi (attention) liczy ważoną sumę wektorów wartości dla każdego tokena.",
    "What is attention in a transformer, and why does it scale quadratically?",
    "Gradient funkcji straty wskazuje kierunek najszybszego wzrostu; liczymy go wstecz.",
    "A hash table maps keys to buckets; collisions are chained or probed. " * 6,
]


def mode() -> str:
    """`$NOTES_RAG_FAST_ENCODER`: auto, bf16 or off."""
    value = os.environ.get(FAST_ENV, "auto").strip().lower() or "auto"
    return value if value in ("auto", "bf16", "off") else "auto"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix products (AVX512_BF16 or AMX): where torch's bf16 autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_dir(folder: Path) -> Path:
    return cache_root() / "encoders" / f"{encoder_id(folder)}-onnx-int8-r{RECIPE}"


def unavailable(folder: Path) -> str | None:
    """Why the ONNX Runtime path cannot embed with `folder` here (None when it can)."""
    if mode() != "auto":
        return f"${FAST_ENV}={mode()}"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install 'notes-rag[fast]')"
    return unsupported(Path(folder))


def attach(encoder, folder: Path, cache_dir: Path | None = None) -> bool:
    """Give `encoder` (sentence-transformers, from `load_encoder`) the fast path as
    `encoder.notes_rag_fast`, building its export first when the cache has none; False, with one
    logged line saying why and what embeds instead, when it cannot."""
    folder = Path(folder).resolve()
    why = unavailable(folder)
    if why is None:
        try:
            dest = ensure_export(encoder, folder, cache_dir)
            encoder.notes_rag_fast = OnnxEncoder(dest, folder, encoder.tokenizer, int(encoder.max_seq_length))
            return True
        except ImportError as e:
            why = f"{e.name or e} is not installed (pip install 'notes-rag[fast]')"
        except Exception as e:  # noqa: BLE001 - any failure of the fast path leaves the torch one
            why = f"{type(e).__name__}: {e}"
    if mode() != "off":
        log.warning("fast encoder off (%s): embedding with torch %s", why, "bf16" if cpu_has_bf16() else "fp32")
    return False


# ------------------------------------------------------------------ the export, built once


def _export_problem(dest: Path, source_id: str) -> str | None:
    try:
        manifest = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no manifest (partial or foreign folder)"
    if manifest.get("recipe") != RECIPE or manifest.get("encoder") != source_id:
        return "made from another encoder or recipe"
    path = dest / "model.onnx"
    if not path.is_file() or path.stat().st_size != manifest.get("size"):
        return "model.onnx is missing or has the wrong size"
    return None


def ensure_export(encoder, folder: Path, cache_dir: Path | None = None) -> Path:
    """The int8 ONNX export of `folder`, built first when missing or stale. `cache_dir`:
    where to keep it (default: the encoder cache, beside the folder)."""
    source_id = encoder_id(folder)
    dest = (Path(cache_dir) / f"{source_id}-onnx-int8-r{RECIPE}") if cache_dir else fast_dir(folder)
    if _export_problem(dest, source_id) is None:
        return dest
    return _locked_build(
        dest,
        lambda: _export_problem(dest, source_id),
        lambda: _build_export(encoder, folder, dest, source_id),
        "exporting the encoder to ONNX",
    )


def _build_export(encoder, folder: Path, dest: Path, source_id: str) -> None:
    t0 = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        with _quiet():
            _export_onnx(folder, tmp / "fp32.onnx")
            _optimize(tmp / "fp32.onnx", tmp / "fused.onnx", config)
            _quantize(tmp / "fused.onnx", tmp / "model.onnx", config)
        for name in ("fp32.onnx", "fused.onnx"):
            (tmp / name).unlink()
        for path in _folder_files(tmp):
            if path.name != "model.onnx":
                path.unlink()
        check = OnnxEncoder(tmp, folder, encoder.tokenizer, int(encoder.max_seq_length))
        cosine = _agreement(encoder, check)
        del check
        if cosine < GUARD:
            raise RuntimeError(f"the int8 export agrees with fp32 only to cosine {cosine:.4f} < {GUARD}")
        manifest = {
            "recipe": RECIPE,
            "encoder": source_id,
            "size": (tmp / "model.onnx").stat().st_size,
            "check_cosine": round(cosine, 5),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _replace_folder(tmp, dest)
        log.info("exported %s to %s in %.1f s (cosine to fp32 %.4f)", folder, dest, time.perf_counter() - t0, cosine)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _quiet():
    """The exporter's tracer warnings and the quantizers' log lines (on the root logger) are
    not the user's business: a build prints nothing but its one info line."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _agreement(encoder, fast: OnnxEncoder) -> float:
    """The least cosine between the torch encoder's and the export's vectors of a few texts."""
    prompt = (getattr(encoder, "prompts", None) or {}).get("passage", "")
    ref = encoder.encode(
        [prompt + t for t in _CHECK_TEXTS], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    ours = fast.encode(_CHECK_TEXTS, prompt)
    return float((ref * ours).sum(axis=1).min())


def _export_onnx(folder: Path, out: Path) -> None:
    """BertModel(inputs_embeds, attention_mask) -> last_hidden_state, fp32, dynamic batch and length."""
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(folder), attn_implementation="eager", add_pooling_layer=False).eval()

    class FromVectors(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, inputs_embeds, attention_mask):
            return self.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    x = torch.randn(2, 16, bert.config.hidden_size)
    mask = torch.ones(2, 16, dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            FromVectors(bert),
            (x, mask),
            str(out),
            input_names=["inputs_embeds", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"inputs_embeds": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )


def _optimize(src: Path, out: Path, config: dict) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(
        str(src),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=1,
    )
    model.save_model_to_file(str(out))


def _quantize(src: Path, out: Path, config: dict) -> None:
    """Dynamic int8 (per-channel weights) except the FFN's second layer, which takes MatMulNBits."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    ffn_out_shape = (int(config["intermediate_size"]), int(config["hidden_size"]))
    ffn_out = [n.name for n in model.graph.node if n.op_type == "MatMul" and shapes.get(n.input[1]) == ffn_out_shape]
    mid = out.with_name("int8.onnx")
    quantize_dynamic(
        str(src),
        str(mid),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=ffn_out,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(mid)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4, nodes_to_include=ffn_out
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    mid.unlink()


# ------------------------------------------------------------------ running it


class OnnxEncoder:
    """The export run by ONNX Runtime: `encode(texts, prompt)` -> (n, d) float32, L2-normalized,
    mean pooled over the tokens (the sentence-transformers folder's pooling)."""

    def __init__(self, onnx_dir: Path, folder: Path, tokenizer, max_seq_length: int, threads: int | None = None):
        import onnxruntime as ort
        from safetensors import safe_open

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # threads that spin while they wait take the core from whoever shares it (2 shared cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = str(Path(onnx_dir) / "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads
        self._file = safe_open(str(Path(folder) / "model.safetensors"), framework="numpy")
        name = next(n for n in _WORDS if n in self._file.keys())
        self._words = self._file.get_slice(name)
        self.dim = int(self._words.get_shape()[1])
        self.tokenizer, self.max_seq_length = tokenizer, max_seq_length
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Every text's ids in one tokenizer call (truncated as sentence-transformers truncates)."""
        return self.tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=self.max_seq_length, verbose=False
        )["input_ids"]

    def encode(self, texts: Sequence[str], prompt: str = "") -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        ids = self.token_ids([prompt + t for t in texts])
        for rows in batches_by_length([len(i) for i in ids]):
            out[rows] = self._embed([ids[r] for r in rows])
        return out

    def _embed(self, ids: list[list[int]]) -> np.ndarray:
        T = max(len(i) for i in ids)
        tokens = np.full((len(ids), T), self.pad_id, np.int64)
        mask = np.zeros((len(ids), T), np.int64)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)], mask[row, : len(seq)] = seq, 1
        vectors = table_rows(self._words, tokens)
        states = self.session.run(None, {"inputs_embeds": vectors, "attention_mask": mask})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def batches_by_length(lengths: Sequence[int], budget: int = TOKEN_BUDGET, max_rows: int = MAX_ROWS) -> list[list[int]]:
    """Indices of `lengths` in batches of similar length, longest first, each padding to at most
    `budget` tokens (rows x its longest) and `max_rows` rows; every index exactly once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, i = [], 0
    while i < len(order):
        longest = max(1, lengths[order[i]])
        n = max(1, min(max_rows, budget // longest))
        batches.append(order[i : i + n])
        i += n
    return batches
