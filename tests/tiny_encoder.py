"""A tiny random sentence-transformers encoder for hermetic index/search tests.

2-layer BertModel (hidden 32) with a fixed WordPiece vocabulary built in-process, mean pooling and
normalization, "query: " / "passage: " prompts and max_seq_length 64 — the same shape of folder
as the default multilingual-e5-small, in a few hundred KB and a second to build.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_MAX_SEQ = 64

_TEXTS = [
    "Sieć neuronowa uczy się wag na podstawie danych. Zażółć gęślą jaźń, źdźbło, łódź.",
    "A transformer uses self-attention to mix information between tokens in a sequence.",
    "Tokenizacja dzieli tekst na tokeny; słownik przypisuje im identyfikatory 749, 750 i 751.",
    "Embeddings map token ids to vectors; positional embeddings add order information.",
    "Mechanizm uwagi (attention) liczy podobieństwo zapytania do klucza i normalizuje je softmaxem.",
    "def forward(self, x): return self.linear(x) # code blocks are kept whole",
]


def _vocab() -> dict[str, int]:
    """A fixed WordPiece vocabulary: the special tokens, every character of the texts and of
    ASCII alone and as a word-continuation piece, the texts' inner 2- and 3-letter pieces, then
    the texts' words. Built, not trained: the
    tokenizers trainer breaks ties between equally frequent merges differently from run to run,
    so chunk boundaries (and every test reading them) changed between runs."""
    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    pre = pre_tokenizers.BertPreTokenizer()
    words = [w for t in _TEXTS for w, _ in pre.pre_tokenize_str(norm.normalize_str(t))]
    chars = sorted(set("".join(words)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?()-'\"/"))
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    grams = {"##" + w[i : i + n] for w in words for n in (2, 3) for i in range(1, len(w) - n + 1)}
    pieces += sorted(grams - set(pieces)) + sorted(set(words) - set(pieces))
    return {p: i for i, p in enumerate(pieces)}


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    raw = folder / "raw"
    tok = Tokenizer(WordPiece(_vocab(), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=TINY_MAX_SEQ,
    )
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=TINY_MAX_SEQ,
        )
    )
    bert.save_pretrained(raw)
    fast.save_pretrained(raw)
    transformer = models.Transformer(str(raw), max_seq_length=TINY_MAX_SEQ)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(
        modules=[transformer, pooling, models.Normalize()],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    out = folder / "st"
    model.save(str(out))
    json.loads((out / "modules.json").read_text())  # a complete sentence-transformers folder
    return out


def build_tiny_index(root: Path, notes: dict[str, str]):
    """Notes (file name -> text) written under `root`/notes and indexed into `root`/index with
    a tiny encoder; (index folder, encoder)."""
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder

    folder = Path(root) / "notes"
    folder.mkdir(parents=True)
    for name, text in notes.items():
        (folder / name).write_text(text, encoding="utf-8")
    encoder = load_encoder(build_tiny_encoder(Path(root) / "encoder"))
    update_index(folder, Path(root) / "index", encoder)
    return Path(root) / "index", encoder
