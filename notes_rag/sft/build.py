"""Build the finetuning set: kit conversions + generated QA, made to look like our retrieval.

`build_sft(cfg, tok)` loads every source (`kit.load_kit`, `qa_generator.generate`), splits
each one by paragraph/document key (`val_frac` of keys held out, so no passage is in both splits,
distractor pools included), mixes the training share by per-source multipliers, and turns every
`Example` into a `chat.format.Conversation` that looks like our retrieval (sft/assemble.py).

Each written record is `Conversation.to_dict()` plus `source`, `lang`, `task`, `gold_passage`
(1-based passage number of the last turn's answer, or null), `gold_answer` (its gold span),
`golds` (the same for every assistant turn) and `n_tokens`.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_text
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.assemble import Pool, assemble
from notes_rag.sft.config import DEFAULT_MIX, BuildConfig
from notes_rag.sft.kit import Anchor, Example, load_kit, read_jsonl_xz
from notes_rag.sft.qa_generator import generate


@dataclass
class BuildResult:
    train: list[dict]
    val: list[dict]
    counts: Counter  # (source, lang, split) -> conversations
    dropped: Counter  # reason -> examples


def split_of(key: str, val_frac: float) -> str:
    return "val" if int(key[:8], 16) % 10_000 < val_frac * 10_000 else "train"


def _mix_counts(n: int, w: float, rng: random.Random) -> list[int]:
    """Indices 0..n-1 repeated/sampled to about w*n items."""
    whole, frac = int(w), w - int(w)
    out = list(range(n)) * whole + rng.sample(range(n), round(frac * n))
    rng.shuffle(out)
    return out


def load_sources(cfg: BuildConfig, rng: random.Random, progress: Callable[[str], None] = lambda s: None):
    """All Examples plus the generator's paragraph pools ({pool name: anchors})."""
    data = Path(cfg.data_dir)
    progress("kit")
    examples = load_kit(data / "sft", rng)
    extra_pool: dict[str, list[Anchor]] = defaultdict(list)
    for name in cfg.gen_files:
        path = data / "pretrain" / f"{name}.jsonl.xz"
        if not path.is_file():
            raise NotesRagError(f"pretraining file missing: {path}")
        progress(name)
        cap = cfg.gen_max_per_file_wiki if "wikipedia" in name else cfg.gen_max_per_file
        ex, anchors = generate(read_jsonl_xz(path), rng, cfg.gen, max_items=cap, pool="pre:" + name)
        examples += ex
        extra_pool["pre:" + name] += anchors
    return examples, extra_pool


def _split(examples: list[Example], extra_pool: dict[str, list[Anchor]], cfg: BuildConfig, dropped: Counter):
    """Examples by split (every key of an example must fall in the same split), the generator's
    paragraphs with their split, and the paragraph texts of the held-out side."""
    by_split: dict[str, list[Example]] = {"train": [], "val": []}
    for ex in examples:
        sp = {split_of(k, cfg.val_frac) for k in ex.keys}
        if len(sp) > 1:
            dropped["crosses splits"] += 1
            continue
        by_split[sp.pop()].append(ex)
    # a paragraph can reach both splits under different keys (a kit context that is also in a
    # pretraining document): the held-out side wins, training drops it
    extra_split = {name: [(a, split_of(a.key, cfg.val_frac)) for a in anchors] for name, anchors in extra_pool.items()}
    val_texts = {a.text for ex in by_split["val"] for a in ex.anchors}
    val_texts |= {a.text for pairs in extra_split.values() for a, sp in pairs if sp == "val"}
    kept = [ex for ex in by_split["train"] if not any(a.text in val_texts for a in ex.anchors)]
    dropped["crosses splits"] += len(by_split["train"]) - len(kept)
    by_split["train"] = kept
    return by_split, extra_split, val_texts


def _pools(by_split: dict[str, list[Example]], extra_split: dict, val_texts: set[str]) -> dict[tuple[str, str], Pool]:
    """Distractor pools per (name, split): anchors of the examples plus the generator's paragraphs."""
    pool_anchors: dict[tuple[str, str], list[Anchor]] = defaultdict(list)
    for split, exs in by_split.items():
        for ex in exs:
            if ex.pool:
                pool_anchors[(ex.pool, split)] += ex.anchors
    for name, pairs in extra_split.items():
        for a, sp in pairs:
            if sp == "val" or a.text not in val_texts:
                pool_anchors[(name, sp)].append(a)
    return {key: Pool(an, english=not key[0].startswith(("poquad", "pre:pl"))) for key, an in pool_anchors.items()}


def _candidates(by_split: dict[str, list[Example]], pools: dict[tuple[str, str], Pool]) -> dict[int, list[int]]:
    """BM25 distractor candidates of each example (by `id`) in its pool, for all its questions."""
    cands: dict[int, list[int]] = {}
    for split, exs in by_split.items():
        groups: dict[str, list[Example]] = defaultdict(list)
        for ex in exs:
            if ex.pool:
                groups[ex.pool].append(ex)
        for name, group in groups.items():
            res = pools[(name, split)].candidates([" ".join(q.question for q in e.qas) for e in group])
            for e, c in zip(group, res):
                cands[id(e)] = c
    return cands


def build_sft(cfg: BuildConfig, tok: Tokenizer, progress: Callable[[str], None] = lambda s: None) -> BuildResult:
    rng = random.Random(cfg.seed)
    unknown = set(cfg.mix) - set(DEFAULT_MIX)
    if unknown:
        raise NotesRagError(
            f"unknown source(s) in --mix: {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_MIX)}"
        )
    examples, extra_pool = load_sources(cfg, rng, progress)
    dropped: Counter = Counter()
    by_split, extra_split, val_texts = _split(examples, extra_pool, cfg, dropped)
    progress("bm25")
    pools = _pools(by_split, extra_split, val_texts)
    all_anchors = {s: [a for (n, sp), p in pools.items() if sp == s for a in p.anchors] for s in ("train", "val")}
    cands = _candidates(by_split, pools)
    # mix and assemble
    out: dict[str, list[dict]] = {"train": [], "val": []}
    counts: Counter = Counter()
    for split, exs in by_split.items():
        by_source: dict[str, list[Example]] = defaultdict(list)
        for ex in exs:
            by_source[ex.source].append(ex)
        for source, group in sorted(by_source.items()):
            progress(f"{split}:{source}")
            if split == "train":
                idx = _mix_counts(len(group), cfg.mix.get(source, 1.0), rng)
            else:
                idx = rng.sample(range(len(group)), min(len(group), cfg.val_max_per_source))
            for i in idx:
                ex = group[i]
                rec = assemble(
                    ex, pools.get((ex.pool, split)), cands.get(id(ex), []), all_anchors[split], rng, cfg, tok
                )
                if rec is None:
                    dropped["too long or no answer left"] += 1
                    continue
                out[split].append(rec)
                counts[(source, rec["lang"], split)] += 1
    rng.shuffle(out["train"])
    return BuildResult(train=out["train"], val=out["val"], counts=counts, dropped=dropped)


def throwaway_tokenizer(data_dir: Path, vocab_size: int = 8192, max_chars: int = 6_000_000) -> Tokenizer:
    """A tokenizer trained on a slice of the pretraining text, only to measure conversation
    lengths before the project's tokenizer exists."""
    from notes_rag.model.tokenizer import train_tokenizer

    files = [
        Path(data_dir) / "pretrain" / f"{n}.jsonl.xz"
        for n in ("pl_wikipedia_paragraphs", "pl_libreoffice_help", "pl_python101", "en_python_docs", "en_d2l")
    ]

    def texts():
        per_file = max_chars // len(files)
        for f in files:
            n = 0
            for r in read_jsonl_xz(f):
                yield r["text"]
                n += len(r["text"])
                if n > per_file:
                    break

    return train_tokenizer(texts(), vocab_size)


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def summary(records: list[dict]) -> dict:
    """Share of Polish and unanswerable conversations, token length percentiles."""
    n = len(records) or 1
    lens = sorted(r["n_tokens"] for r in records) or [0]
    return {
        "conversations": len(records),
        "polish": sum(r["lang"] == "pl" for r in records) / n,
        "unanswerable": sum(r["task"] == "qa" and r["gold_passage"] is None for r in records) / n,
        "multi_turn": sum(len(r["turns"]) > 2 for r in records) / n,
        "tokens_p50": lens[len(lens) // 2],
        "tokens_p95": lens[int(0.95 * (len(lens) - 1))],
        "tokens_max": lens[-1],
    }
