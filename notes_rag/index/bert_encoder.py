"""A sentence-transformers BERT folder computed with numpy: the encoder of one-shot commands.

Loading a folder with sentence-transformers costs seconds (importing it, transformers and
torch) and a query is a few dozen tokens. `BertEncoder.open(folder)` reads the same files
instead: `tokenizer.json` with the `tokenizers` library and `model.safetensors` with
`safetensors` (the word embeddings stay memory-mapped: only the rows of the tokens seen are
read), then runs transformers' BertModel forward in float32 numpy, as sentence-transformers
runs it, and the folder's pooling (mean or CLS) and normalization. Its vectors are the
sentence-transformers encoder's (tests/test_bert_encoder.py compares them).

It takes only what it computes exactly: a plain BERT, pooling over all tokens, float32 or
float16 weights. `unsupported(folder)` says why another folder is not taken, and
index/encoder.py loads that one with sentence-transformers. `encode` takes the arguments of
sentence-transformers' `encode` that `encode_queries` / `encode_passages` pass, so those accept
either encoder.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

# modules.json types, in the spellings of sentence-transformers before and after 5.0
_ST = "sentence_transformers."
_TRANSFORMER = (_ST + "models.Transformer", _ST + "base.modules.transformer.Transformer")
_POOLING = (_ST + "models.Pooling", _ST + "sentence_transformer.modules.pooling.Pooling")
_NORMALIZE = (_ST + "models.Normalize", _ST + "base.modules.normalize.Normalize")
_WORDS = "embeddings.word_embeddings.weight"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _pooling_mode(config: dict) -> str | None:
    """The pooling, "mean" or "cls", from either spelling of a Pooling config; None for any other."""
    if not config.get("include_prompt", True):
        return None
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
    else:
        on = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
        names = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
        mode = names.get(on[0]) if len(on) == 1 else None
    return mode if mode in ("mean", "cls") else None


def unsupported(folder: Path) -> str | None:
    """Why `folder` is not a model this forward computes exactly; None when it is."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        config = _json(folder / "config.json")
        types = [m["type"] for m in modules]
        pooling = _json(folder / modules[1]["path"] / "config.json") if len(modules) > 1 else {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable modules.json or config.json ({e})"
    if not (
        len(types) in (2, 3) and types[0] in _TRANSFORMER and types[1] in _POOLING and set(types[2:]) <= set(_NORMALIZE)
    ):
        return f"modules {types}"
    if _pooling_mode(pooling) is None:
        return "a pooling other than mean or CLS over all tokens"
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        return f"model type {config.get('model_type')} (position embeddings {config.get('position_embedding_type')})"
    if config.get("hidden_act") != "gelu":
        return f"activation {config.get('hidden_act')}"
    if _json(folder / "sentence_bert_config.json").get("do_lower_case"):
        return "do_lower_case"
    if not (folder / "tokenizer.json").is_file() or not (folder / "model.safetensors").is_file():
        return "no tokenizer.json or model.safetensors"
    return None


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x) = (x + |x|·erf(|x|/√2)) / 2, with erf to within 1.5e-7
    (Abramowitz & Stegun 7.1.26): below float32 rounding of the activations, and numpy has no erf."""
    a = np.abs(x)
    z = a * np.float32(0.7071067811865476)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return 0.5 * (x + a * (1.0 - poly * np.exp(-z * z)))


@dataclass
class _Layer:
    qkv: tuple[np.ndarray, np.ndarray]  # query, key and value projections stacked: [3H, H], [3H]
    out: tuple[np.ndarray, np.ndarray]
    ln1: tuple[np.ndarray, np.ndarray]
    ffn_in: tuple[np.ndarray, np.ndarray]
    ffn_out: tuple[np.ndarray, np.ndarray]
    ln2: tuple[np.ndarray, np.ndarray]


def table_rows(table, ids: np.ndarray) -> np.ndarray:
    """Rows `ids` (any shape) of a memory-mapped safetensors table (`safe_open(...).get_slice`),
    float32, reading only those rows: e5's word table is 250k x 384 and a batch needs a few
    hundred of them. The index-time encoder reads its word embeddings the same way
    (index/encoder.py)."""
    unique, where = np.unique(ids, return_inverse=True)
    rows = np.stack([table[i : i + 1][0] for i in unique.tolist()]).astype(np.float32)
    return rows[where.reshape(ids.shape)]


def _linear(x: np.ndarray, wb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    # one GEMM over every token of the batch: matmul of a 3-d array makes one BLAS call per row
    return (x.reshape(-1, x.shape[-1]) @ wb[0].T + wb[1]).reshape(*x.shape[:-1], -1)


def _read_tokenizer(path: Path, max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # batches are padded in `_embed_batch`, with the attention mask
    tokenizer.enable_truncation(max_length)  # as sentence-transformers: at max_seq_length, specials included
    return tokenizer


class BertEncoder:
    """A BERT sentence encoder on numpy; see the module docstring."""

    def __init__(self, folder: Path):
        from concurrent.futures import ThreadPoolExecutor

        from safetensors import safe_open

        folder = Path(folder).resolve()
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        config = _json(folder / "config.json")
        max_len = _json(folder / "sentence_bert_config.json").get("max_seq_length") or _json(
            folder / "tokenizer_config.json"
        ).get("model_max_length", 512)
        self.max_seq_length = int(min(max_len, config["max_position_embeddings"]))
        self.prompts: dict[str, str] = _json(folder / "config_sentence_transformers.json").get("prompts") or {}
        self.pooling = _pooling_mode(_json(folder / modules[1]["path"] / "config.json"))
        self.normalize = len(modules) == 3
        self.notes_rag_folder = folder  # what encoder_id names
        self.hidden, self.heads = config["hidden_size"], config["num_attention_heads"]
        self.eps = float(config.get("layer_norm_eps", 1e-12))

        with ThreadPoolExecutor(1) as pool:
            # e5's 250k-piece vocabulary takes ~0.5 s to build, outside the GIL: the weights load meanwhile
            tokenizer = pool.submit(_read_tokenizer, folder / "tokenizer.json", self.max_seq_length)
            # the file stays open (memory-mapped): word embeddings are read as tokens need them
            self._file = safe_open(str(folder / "model.safetensors"), framework="numpy")
            # checkpoints saved from BertFor* models prefix every name with "bert."
            self._prefix = "" if _WORDS in self._file.keys() else "bert."
            self._words = self._file.get_slice(self._prefix + _WORDS)
            self.positions = self._tensor("embeddings.position_embeddings.weight")
            self.type0 = self._tensor("embeddings.token_type_embeddings.weight")[0]  # one segment: type 0
            self.emb_ln = self._pair("embeddings.LayerNorm")
            self.layers = [self._layer(f"encoder.layer.{i}.") for i in range(config["num_hidden_layers"])]
            self.tokenizer = tokenizer.result()

    def _tensor(self, name: str) -> np.ndarray:
        return self._file.get_tensor(self._prefix + name).astype(np.float32)

    def _pair(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._tensor(f"{name}.weight"), self._tensor(f"{name}.bias")

    def _layer(self, p: str, tensor: Callable[[str], np.ndarray] | None = None) -> _Layer:
        get = tensor or self._tensor

        def pair(name: str) -> tuple[np.ndarray, np.ndarray]:
            return get(f"{name}.weight"), get(f"{name}.bias")

        q, k, v = (pair(f"{p}attention.self.{n}") for n in ("query", "key", "value"))
        return _Layer(
            qkv=(np.concatenate([q[0], k[0], v[0]]), np.concatenate([q[1], k[1], v[1]])),
            out=pair(p + "attention.output.dense"),
            ln1=pair(p + "attention.output.LayerNorm"),
            ffn_in=pair(p + "intermediate.dense"),
            ffn_out=pair(p + "output.dense"),
            ln2=pair(p + "output.LayerNorm"),
        )

    def with_layers(self, tensors: Mapping[str, np.ndarray]) -> BertEncoder:
        """A twin that computes with `tensors` (transformers' names, `encoder.layer.N.…`) in
        place of those layers, sharing everything else (tokenizer, memory-mapped word table):
        how a fine-tuned head model (model/unit_reranker.py) runs without a second folder.
        Its pooled states are not normalized. A missing or misshapen tensor raises ValueError."""
        twin = copy.copy(self)
        twin.layers = list(self.layers)
        twin.normalize = False

        def get(name: str) -> np.ndarray:
            value = tensors.get(name)
            if value is None:
                raise ValueError(f"{name} is missing")
            # the shape from the file's header: the base tensor itself is never used
            base = tuple(self._file.get_slice(self._prefix + name).get_shape())
            if tuple(value.shape) != base:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, the encoder's {base}")
            return np.asarray(value, np.float32)

        for i in sorted({int(n.split(".")[2]) for n in tensors if n.startswith("encoder.layer.")}):
            if i >= len(self.layers):
                raise ValueError(f"encoder.layer.{i} is beyond the encoder's {len(self.layers)} layers")
            twin.layers[i] = self._layer(f"encoder.layer.{i}.", get)
        return twin

    def get_sentence_embedding_dimension(self) -> int:
        return self.hidden

    def _embed_tokens(self, ids: np.ndarray) -> np.ndarray:
        return table_rows(self._words, ids)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """transformers' BertModel, eval mode: the last hidden states, [batch, tokens, hidden]."""
        n, T = ids.shape
        H, heads = self.hidden, self.heads
        x = self._embed_tokens(ids) + self.positions[:T] + self.type0
        x = _layer_norm(x, *self.emb_ln, self.eps)
        # padding keys get the most negative float added, as transformers does
        bias = np.where(mask, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(H // heads))
        for layer in self.layers:
            qkv = _linear(x, layer.qkv).reshape(n, T, 3, heads, H // heads)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each [batch, heads, tokens, head dim]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, T, H)
            x = _layer_norm(_linear(context, layer.out) + x, *layer.ln1, self.eps)
            x = _layer_norm(_linear(_gelu(_linear(x, layer.ffn_in)), layer.ffn_out) + x, *layer.ln2, self.eps)
        return x

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        T = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), T), np.int64)
        mask = np.zeros((len(texts), T), bool)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = True
        states = self._forward(ids, mask)
        if self.pooling == "cls":
            return states[:, 0]
        weights = mask[:, :, None].astype(np.float32)
        return (states * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)

    def encode(
        self,
        sentences: Sequence[str] | str,
        batch_size: int = 32,
        prompt_name: str | None = None,
        normalize_embeddings: bool = False,
        **_display: object,  # convert_to_numpy, show_progress_bar: always numpy, never a bar
    ) -> np.ndarray:
        """Embeddings [n, hidden] float32, as SentenceTransformer.encode computes them."""
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        prompt = self.prompts.get(prompt_name, "") if prompt_name else ""
        texts = [prompt + t for t in texts]
        if not texts:
            return np.zeros((0, self.hidden), np.float32)
        # similar lengths together, so a batch pads little
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.hidden), np.float32)
        # One BLAS thread: OpenBLAS's threads spin while they wait, and on a busy two-core
        # machine 4 queries took 1.6 s with two threads, 0.1 s with one (60 sentences: 4.8 s, 2.8 s).
        with threadpool_limits(1, user_api="blas"):
            for a in range(0, len(order), batch_size):
                rows = order[a : a + batch_size]
                out[rows] = self._embed_batch([texts[i] for i in rows])
        if self.normalize or normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
