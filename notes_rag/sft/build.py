"""Build the finetuning set: kit conversions + generated QA, made to look like our retrieval.

`build_sft(cfg, tok)` loads every source (`sft_data.load_kit`, `qa_generator.generate`), splits
each one by paragraph/document key (`val_frac` of keys held out, so no passage is in both splits,
distractor pools included), mixes the training share by per-source multipliers, and turns every
`Example` into a `chat_format.Conversation`:

1. each anchor paragraph is trimmed to a chunk of 100-150 words around its answer(s);
2. with probability `drop_gold_rate` an answerable example loses its gold paragraph and every
   question answered from it becomes an abstention (distractors of the same article/document are
   then excluded, and no distractor may contain a gold span);
3. distractors fill the passages up to k (3-5): BM25 neighbours of the questions among the
   other paragraphs of the same source and split (bm25s), some picked at random instead;
4. passages are shuffled and numbered; answers are rendered in the documented style with the
   gold passage's citation; conversations over `max_tokens` lose distractors or are dropped.

Each written record is `Conversation.to_dict()` plus `source`, `lang`, `task`, `gold_passage`
(1-based passage number of the last turn's answer, or null), `gold_answer` (its gold span),
`golds` (the same for every assistant turn) and `n_tokens`.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.chat.format import ABSTAIN, INSTRUCT_PROMPT, SYSTEM_PROMPT, Conversation, Passage, Turn, render
from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_text
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.clauses import answer_clause, trim_around
from notes_rag.sft.kit import Anchor, Example, load_kit, read_jsonl_xz
from notes_rag.sft.qa_generator import GenConfig, generate
from notes_rag.text import best_sentence_span

# Multipliers on each source's natural training count (1 = every item once, 0.5 = half of them,
# 2 = twice with different distractors). Polish is upsampled (PoQuAD x1.5); ROPES (12k templated
# comparisons) and Tatoeba (43k short pairs) are sampled down to a small share.
DEFAULT_MIX = {
    "xquad": 1.0,
    "xquad_neg": 0.5,
    "xquad_dialog": 1.0,
    "squad2": 1.0,
    "boolq": 0.5,
    "ropes": 0.08,
    "poquad": 1.5,
    "instructions": 0.7,
    "tatoeba": 0.015,
    "gen_pl": 1.0,
    "gen_en": 1.0,
    "gen_xling": 1.0,
}

# Pretraining files the generator reads (Polish technical prose first; literature is left out:
# 19th-century prose yields neither definitions nor note-like questions).
GEN_FILES_PL = (
    "pl_wikipedia_paragraphs",
    "pl_python101",
    "pl_ms_edgeai_beginners",
    "pl_ms_iot_beginners",
    "pl_ms_security101",
    "pl_ms_azd_beginners",
    "pl_ms_foundry_local_lab",
    "pl_ms_foundry_toolkit_lab",
    "pl_mdn_archived",
    "pl_react_docs",
    "pl_python_docs",
    "pl_djangogirls",
    "pl_symfony_docs",
    "pl_php_manual",
    "pl_gnome_help",
    "pl_gnome_apps_help",
    "pl_libreoffice_help",
    "pl_kde_handbooks",
    "pl_debian_handbook",
    "pl_kicad_docs",
)
GEN_FILES_EN = (
    "en_d2l",
    "en_sklearn_docs",
    "en_pandas_docs",
    "en_python_docs",
    "en_openstax",
    "en_django_docs",
    "en_gnome_help",
    "en_debian_handbook",
    "en_rust_docs",
    "en_sqlite_docs",
    "en_postgresql_docs",
    "en_apache_docs",
    "en_nodejs_docs",
    "en_ghc_users_guide",
)


@dataclass
class BuildConfig:
    data_dir: Path = Path("../shared/data")  # holds sft/ and pretrain/
    seed: int = 1234
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    val_frac: float = 0.05  # share of paragraph/document keys held out per source
    val_max_per_source: int = 200
    k_range: tuple[int, int] = (3, 5)  # passages per conversation
    chunk_words: tuple[int, int] = (100, 150)  # our retrieval chunks are ~120 words
    drop_gold_rate: float = 0.08
    random_distractor_rate: float = 0.2
    max_tokens: int = 1024
    gen_files: tuple[str, ...] = GEN_FILES_PL + GEN_FILES_EN
    gen_max_per_file: int = 700
    gen_max_per_file_wiki: int = 2500  # Wikipedia leads: the only big modern Polish prose file
    gen: GenConfig = field(default_factory=GenConfig)


@dataclass
class BuildResult:
    train: list[dict]
    val: list[dict]
    counts: Counter  # (source, lang, split) -> conversations
    dropped: Counter  # reason -> examples


def split_of(key: str, val_frac: float) -> str:
    return "val" if int(key[:8], 16) % 10_000 < val_frac * 10_000 else "train"


class _Pool:
    """Paragraphs of one source in one split, with a BM25 index over them."""

    def __init__(self, anchors: list[Anchor], english: bool):
        import bm25s

        seen, self.anchors = set(), []
        for a in anchors:
            if a.text not in seen:
                seen.add(a.text)
                self.anchors.append(a)
        self.stop = "en" if english else None
        self.bm25 = None
        if len(self.anchors) > 1:
            tokens = bm25s.tokenize([a.text for a in self.anchors], stopwords=self.stop, show_progress=False)
            self.bm25 = bm25s.BM25()
            self.bm25.index(tokens, show_progress=False)
            self.vocab = tokens.vocab

    def candidates(self, queries: list[str], k: int = 16) -> list[list[int]]:
        if self.bm25 is None:
            return [list(range(len(self.anchors))) for _ in queries]
        import bm25s

        toks = bm25s.tokenize(queries, stopwords=self.stop, return_ids=False, show_progress=False)
        toks = [[t for t in q if t in self.vocab] or [next(iter(self.vocab))] for q in toks]
        k = min(k, len(self.anchors))
        docs, _ = self.bm25.retrieve(toks, k=k, show_progress=False, n_threads=1)
        return [list(map(int, row)) for row in docs]


def _mix_counts(n: int, w: float, rng: random.Random) -> list[int]:
    """Indices 0..n-1 repeated/sampled to about w*n items."""
    whole, frac = int(w), w - int(w)
    out = list(range(n)) * whole + rng.sample(range(n), round(frac * n))
    rng.shuffle(out)
    return out


def _assemble(
    ex: Example,
    pool: _Pool | None,
    cands: list[int],
    all_anchors: list[Anchor],
    rng: random.Random,
    cfg: BuildConfig,
    tok: Tokenizer,
) -> dict | None:
    lang = ex.lang
    if ex.task != "qa" or not ex.anchors:
        q = ex.qas[0]
        conv = Conversation(system=INSTRUCT_PROMPT[lang], turns=[Turn("user", q.question), Turn("assistant", q.answer)])
        return _record(conv, ex, [(None, q.span)], tok, cfg, [])
    max_words = rng.randint(*cfg.chunk_words)
    # 1. trim anchors around their answers; locate each question's answer inside the trimmed text
    qas = []  # [question, anchor | None, local start, span, style, answer]
    trimmed: list[str] = []
    for ai, an in enumerate(ex.anchors):
        here = []
        for q in ex.qas:
            if q.anchor != ai:
                continue
            start, span = q.start, q.span
            if q.style == "boolean" or start < 0 or an.text[start : start + len(span)] != span:
                a, b = best_sentence_span(an.text, q.question)
                start, span = (a, an.text[a:b]) if q.style == "boolean" else (a, span)
            here.append((q, start, span))
        if here:
            lo, hi = min(s for _, s, _ in here), max(s + len(sp) for _, s, sp in here)
            a, b = trim_around(an.text, lo, hi, max_words)
            if a > lo or b < hi:  # the answers do not fit one chunk: keep the first question's
                _, s0, sp0 = here[0]
                a, b = trim_around(an.text, s0, s0 + len(sp0), max_words)
        else:
            s0, e0 = best_sentence_span(an.text, " ".join(q.question for q in ex.qas))
            a, b = trim_around(an.text, s0, e0, max_words)
        trimmed.append(an.text[a:b])
        for q, s, sp in here:
            if a <= s and s + len(sp) <= b:
                qas.append([q, ai, s - a, sp])
    for q in ex.qas:
        if q.anchor is None:
            qas.append([q, None, -1, ""])
    order = {id(q): i for i, q in enumerate(ex.qas)}
    qas.sort(key=lambda x: order[id(x[0])])
    if not qas:
        return None
    # 2. maybe remove a gold paragraph: its questions become unanswerable
    dropped: set[int] = set()
    golds = sorted({x[1] for x in qas if x[1] is not None})
    if ex.droppable and golds and rng.random() < cfg.drop_gold_rate:
        dropped.add(rng.choice(golds))
    # 3. distractors
    k = rng.randint(*cfg.k_range)
    kept = [i for i in range(len(ex.anchors)) if i not in dropped]
    spans = [x[3].lower() for x in qas if len(x[3]) >= 3 and x[0].style != "boolean"]
    # a distractor must not answer a question we label unanswerable: when a question has no
    # answer (or lost its gold), the whole article/document it is about is off limits
    unanswerable = set(dropped)
    if any(x[1] is None for x in qas):
        unanswerable |= set(range(len(ex.anchors)))
    banned_titles = {ex.anchors[i].title for i in unanswerable} | set(ex.banned_titles)
    banned_keys = {ex.anchors[i].key for i in unanswerable}
    own = {a.text[:200] for a in ex.anchors}  # ROPES repeats one background under many situations

    def ok(a: Anchor) -> bool:
        low = a.text.lower()
        return (
            a.text[:200] not in own
            and a.title not in banned_titles
            and a.key not in banned_keys
            and not any(s in low for s in spans)
        )

    picked: list[Anchor] = []
    queue = [pool.anchors[i] for i in cands] if pool else []
    tries = 0
    while len(kept) + len(picked) < k and tries < 40:
        tries += 1
        if queue and rng.random() >= cfg.random_distractor_rate:
            a = queue.pop(0)
        elif all_anchors:
            a = rng.choice(all_anchors)
        else:
            break
        if ok(a) and all(a.text != p.text for p in picked):
            picked.append(a)
    query = " ".join(x[0].question for x in qas)
    passages: list[tuple[Passage, int | None]] = [
        (Passage(f"{ex.anchors[i].file} › {ex.anchors[i].title}", trimmed[i]), i) for i in kept
    ]
    for a in picked:
        s0, e0 = best_sentence_span(a.text, query)
        x, y = trim_around(a.text, s0, e0, rng.randint(*cfg.chunk_words))
        passages.append((Passage(f"{a.file} › {a.title}", a.text[x:y]), None))
    rng.shuffle(passages)
    number = {ai: n for n, (_, ai) in enumerate(passages, 1) if ai is not None}
    # 4. turns
    turns, gold_info = [], []
    for q, ai, s, span in qas:
        turns.append(Turn("user", q.question))
        if ai is None or ai in dropped:
            turns.append(Turn("assistant", ABSTAIN[lang]))
            gold_info.append((None, ""))
            continue
        text = trimmed[ai]
        if q.style == "sentence":
            body = answer_clause(text, s, s + len(span))
        elif q.style == "boolean":
            yes = q.answer == "yes"
            body = ("Yes — " if yes else "No — ") + answer_clause(text, s, s + len(span))
            span = q.answer
        else:
            body = q.answer
        turns.append(Turn("assistant", f"{body.rstrip()} [{number[ai]}]"))
        gold_info.append((number[ai], span))
    conv = Conversation(system=SYSTEM_PROMPT[lang], passages=[p for p, _ in passages], turns=turns)
    return _record(conv, ex, gold_info, tok, cfg, [i for i, (_, ai) in enumerate(passages) if ai is None])


def _record(
    conv: Conversation, ex: Example, gold_info: list, tok: Tokenizer, cfg: BuildConfig, removable: list[int]
) -> dict | None:
    """The JSON record, after fitting the conversation into `max_tokens` (distractors go first)."""
    while True:
        n = len(render(conv, tok)[0])
        if n <= cfg.max_tokens:
            break
        if not removable:
            return None
        drop = removable.pop()
        # renumber: passages after the dropped one move up by one
        conv.passages.pop(drop)
        removable = [i - (i > drop) for i in removable]
        gold_info = [(None if g is None else g - (g > drop + 1), s) for g, s in gold_info]
        conv.turns = [_renumber(t, drop + 1) for t in conv.turns]
    return {
        **conv.to_dict(),
        "source": ex.source,
        "lang": ex.lang,
        "task": ex.task,
        "gold_passage": gold_info[-1][0],
        "gold_answer": gold_info[-1][1],
        "golds": [{"passage": g, "answer": s} for g, s in gold_info],
        "n_tokens": n,
    }


def _renumber(t: Turn, removed: int) -> Turn:
    if t.role != "assistant":
        return t
    return Turn(
        t.role, re.sub(r"\[(\d+)\]$", lambda m: f"[{int(m.group(1)) - (int(m.group(1)) > removed)}]", t.content)
    )


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


def build_sft(cfg: BuildConfig, tok: Tokenizer, progress: Callable[[str], None] = lambda s: None) -> BuildResult:
    rng = random.Random(cfg.seed)
    unknown = set(cfg.mix) - set(DEFAULT_MIX)
    if unknown:
        raise NotesRagError(
            f"unknown source(s) in --mix: {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_MIX)}"
        )
    examples, extra_pool = load_sources(cfg, rng, progress)
    dropped: Counter = Counter()
    # split: every key of an example must fall in the same split
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
    # pools per (name, split): anchors of the examples plus the generator's paragraphs
    progress("bm25")
    pool_anchors: dict[tuple[str, str], list[Anchor]] = defaultdict(list)
    for split, exs in by_split.items():
        for ex in exs:
            if ex.pool:
                pool_anchors[(ex.pool, split)] += ex.anchors
    for name, pairs in extra_split.items():
        for a, sp in pairs:
            if sp == "val" or a.text not in val_texts:
                pool_anchors[(name, sp)].append(a)
    pools = {key: _Pool(an, english=not key[0].startswith(("poquad", "pre:pl"))) for key, an in pool_anchors.items()}
    all_anchors = {s: [a for (n, sp), p in pools.items() if sp == s for a in p.anchors] for s in ("train", "val")}
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
                rec = _assemble(
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
