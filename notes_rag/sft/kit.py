"""Converters from the SFT kit (`shared/data/sft/*.jsonl.xz`) into source-neutral `Example`s.

An `Example` is a conversation before retrieval is simulated: the passages that must be present
(`anchors`, full paragraphs), the questions with where their answers are, and the answer style.
`sft/build.py` later trims the anchors to chunk size, adds BM25 distractors, shuffles, numbers and
renders the answers (`chat.format` style). Schemas are in the kit's MANIFEST.md / MANIFEST-pl.md.

Answer styles (see docs/CHAT_FORMAT.md): "sentence" (the sentence/clause of the anchor holding
the span), "span" (the span itself, already an answer), "boolean" (Yes/No — best-matching
sentence), "text" (a literal answer with no passage: instructions, translation).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.sft.clauses import slug
from notes_rag.text import n_words


@dataclass
class Anchor:
    """A paragraph that must be among the passages (unless dropped to make an unanswerable)."""

    text: str
    title: str  # heading for the passage label
    file: str  # file name for the passage label
    key: str  # split key: examples sharing a paragraph/document share a key


@dataclass
class QA:
    question: str
    anchor: int | None  # index into Example.anchors holding the answer; None = unanswerable
    span: str = ""  # gold answer span (for eval), "" when unanswerable
    start: int = -1  # character offset of the span in the anchor's text, -1 if not located
    style: str = "sentence"
    answer: str = ""  # "text" style: the literal answer; "boolean": "yes" | "no"


@dataclass
class Example:
    source: str
    lang: str
    qas: list[QA]
    anchors: list[Anchor] = field(default_factory=list)
    pool: str = ""  # distractor pool; "" = passage-free task
    task: str = "qa"  # "qa" | "instruct" | "translate"
    droppable: bool = True  # may the gold anchor be removed to make an unanswerable?
    extra_keys: list[str] = field(default_factory=list)  # more split keys that must agree
    banned_titles: list[str] = field(default_factory=list)  # articles no distractor may come from

    @property
    def keys(self) -> list[str]:
        own = [a.key for a in self.anchors] or [text_key(self.source + ":" + self.qas[0].question)]
        return own + self.extra_keys


def text_key(text: str) -> str:
    """Split key of a paragraph: same text (up to case and spacing) -> same key."""
    norm = " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())
    return hashlib.sha1(norm.encode()).hexdigest()[:16]


def read_jsonl_xz(path: Path) -> Iterator[dict]:
    try:
        with lzma.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    except (OSError, lzma.LZMAError, json.JSONDecodeError) as e:
        raise NotesRagError(f"cannot read {path}: {e}") from None


def _label_file(title: str, rng: random.Random) -> str:
    ext = rng.choice([".md", ".md", ".md", ".txt"])
    return slug(title) + ext


def _anchor(ctx: str, title: str, rng: random.Random) -> Anchor:
    title = title.replace("_", " ").strip() or " ".join(ctx.split()[:4]).strip(".,:;")
    return Anchor(text=ctx, title=title, file=_label_file(title, rng), key=text_key(ctx))


def _extractive_qa(r: dict) -> QA:
    if not r.get("answerable", True) or not r.get("answers"):
        return QA(question=r["question"], anchor=None)
    a = r["answers"][0]
    return QA(question=r["question"], anchor=0, span=a["text"], start=a["answer_start"])


def convert_extractive(
    records: Iterable[dict], source: str, pool: str, rng: random.Random, multi_turn: float = 0.25
) -> list[Example]:
    """SQuAD-style records (XQuAD, SQuAD 2.0, PoQuAD): one example per question, except that a
    share `multi_turn` of paragraphs have their questions grouped 2-3 per conversation.
    Human-written unanswerables keep their own paragraph as the passage."""
    by_ctx: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_ctx[r["context"]].append(r)
    out = []
    for ctx, rs in by_ctx.items():
        rng.shuffle(rs)
        lang = rs[0].get("lang", "en")
        groups: list[list[dict]]
        if len(rs) >= 2 and rng.random() < multi_turn:
            groups, i = [], 0
            while i < len(rs):
                n = rng.choice((2, 3))
                groups.append(rs[i : i + n])
                i += n
        else:
            groups = [[r] for r in rs]
        for g in groups:
            out.append(
                Example(
                    source=source,
                    lang=lang,
                    pool=pool,
                    anchors=[_anchor(ctx, g[0].get("title", ""), rng)],
                    qas=[_extractive_qa(r) for r in g],
                )
            )
    return out


def convert_negatives(
    records: Iterable[dict], originals: dict[str, dict], source: str, pool: str, rng: random.Random
) -> list[Example]:
    """Synthetic unanswerables (a question paired with another article's paragraph). `originals`
    maps each question to its answerable record: its paragraph is a second split key (a question
    never crosses splits) and its article is banned from the distractors (they could answer it)."""
    out = []
    for r in records:
        ex = Example(
            source=source,
            lang=r.get("lang", "en"),
            pool=pool,
            droppable=False,
            anchors=[_anchor(r["context"], r.get("title", ""), rng)],
            qas=[QA(question=r["question"], anchor=None)],
        )
        orig = originals.get(r["question"])
        if orig is not None:
            ex.extra_keys.append(text_key(orig["context"]))
            ex.banned_titles.append(orig.get("title", "").replace("_", " ").strip())
        out.append(ex)
    return out


def convert_dialogs(records: Iterable[dict], source: str, pool: str, rng: random.Random) -> list[Example]:
    """Grouped XQuAD questions of one paragraph as one multi-turn conversation (its synthetic
    unanswerable turn stays as an abstention turn)."""
    out = []
    for r in records:
        qas = [_extractive_qa(t) for t in r["turns"]]
        out.append(
            Example(
                source=source,
                lang=r.get("lang", "en"),
                pool=pool,
                droppable=False,
                anchors=[_anchor(r["context"], r.get("title", ""), rng)],
                qas=qas,
            )
        )
    return out


def convert_boolq(records: Iterable[dict], source: str, pool: str, rng: random.Random) -> list[Example]:
    out = []
    for r in records:
        yes = r["answers"][0]["text"].lower() == "yes"
        out.append(
            Example(
                source=source,
                lang="en",
                pool=pool,
                anchors=[_anchor(r["context"], r.get("title", ""), rng)],
                qas=[
                    QA(
                        question=r["question"],
                        anchor=0,
                        span="yes" if yes else "no",
                        style="boolean",
                        answer="yes" if yes else "no",
                    )
                ],
            )
        )
    return out


def convert_ropes(records: Iterable[dict], source: str, pool: str, rng: random.Random) -> list[Example]:
    """ROPES: reasoning over a background + situation; the answer is the short span itself."""
    out = []
    for r in records:
        a = r["answers"][0]
        span = a["text"].strip()
        ctx = r["context"]
        start = a["answer_start"]
        if start < 0:  # "choice" answers are named in the question, not the context
            start = ctx.find("\n\n") + 2 if "\n\n" in ctx else 0
        out.append(
            Example(
                source=source,
                lang="en",
                pool=pool,
                droppable=False,
                anchors=[_anchor(ctx, "", rng)],
                qas=[
                    QA(
                        question=r["question"],
                        anchor=0,
                        span=span,
                        start=start,
                        style="span",
                        answer=span[:1].upper() + span[1:],
                    )
                ],
            )
        )
    return out


def convert_instructions(records: Iterable[dict], source: str, max_answer_words: int = 60) -> list[Example]:
    """Alpaca-style instructions without passages; long answers are dropped (answers stay short)."""
    out = []
    for r in records:
        if n_words(r["output"]) > max_answer_words:
            continue
        q = r["instruction"].strip() + (f"\n\n{r['input'].strip()}" if r.get("input", "").strip() else "")
        out.append(
            Example(
                source=source,
                lang=r.get("lang", "en"),
                task="instruct",
                droppable=False,
                qas=[QA(question=q, anchor=None, span=r["output"], style="text", answer=r["output"])],
            )
        )
    return out


_TRANSLATE = {
    "pl": ["Przetłumacz na angielski: „{}”", "Jak powiedzieć po angielsku: „{}”?", "Przetłumacz na angielski:\n{}"],
    "en": ['Translate into Polish: "{}"', 'How do you say "{}" in Polish?', "Translate to Polish:\n{}"],
}


def convert_translation(records: Iterable[dict], source: str, rng: random.Random, min_words: int = 4) -> list[Example]:
    """EN–PL sentence pairs as translation instructions, each direction asked in its source language."""
    out = []
    for r in records:
        if n_words(r["en"]) < min_words:
            continue
        src = rng.choice(("pl", "en"))
        dst = "en" if src == "pl" else "pl"
        q = rng.choice(_TRANSLATE[src]).format(r[src])
        out.append(
            Example(
                source=source,
                lang=src,
                task="translate",
                droppable=False,
                qas=[QA(question=q, anchor=None, span=r[dst], style="text", answer=r[dst])],
            )
        )
    return out


# kit file -> (source name, pool); converters are chosen in `load_kit`
KIT_FILES = {
    "en_qa_xquad": ("xquad", "xquad"),
    "en_qa_xquad_negatives": ("xquad_neg", "xquad"),
    "en_dialogqa_xquad_grouped": ("xquad_dialog", "xquad"),
    "en_qa_squad2_devhalf": ("squad2", "squad2"),
    "en_qa_squad2_subset": ("squad2", "squad2"),
    "en_qa_boolq": ("boolq", "boolq"),
    "en_qa_ropes": ("ropes", "ropes"),
    "pl_qa_poquad": ("poquad", "poquad"),
    "en_instructions_rasbt": ("instructions", ""),
    "enpl_parallel_tatoeba": ("tatoeba", ""),
}


def load_kit(sft_dir: Path, rng: random.Random) -> list[Example]:
    """Every kit source converted to Examples (unmixed, unsplit)."""
    sft_dir = Path(sft_dir)
    missing = [n for n in KIT_FILES if not (sft_dir / f"{n}.jsonl.xz").is_file()]
    if missing:
        raise NotesRagError(f"SFT kit incomplete in {sft_dir}: missing {', '.join(missing)}")

    def recs(name: str) -> list[dict]:
        return list(read_jsonl_xz(sft_dir / f"{name}.jsonl.xz"))

    xquad = recs("en_qa_xquad")
    originals = {r["question"]: r for r in xquad}
    out: list[Example] = []
    out += convert_extractive(xquad, "xquad", "xquad", rng)
    out += convert_negatives(recs("en_qa_xquad_negatives"), originals, "xquad_neg", "xquad", rng)
    out += convert_dialogs(recs("en_dialogqa_xquad_grouped"), "xquad_dialog", "xquad", rng)
    out += convert_extractive(recs("en_qa_squad2_devhalf") + recs("en_qa_squad2_subset"), "squad2", "squad2", rng)
    out += convert_boolq(recs("en_qa_boolq"), "boolq", "boolq", rng)
    out += convert_ropes(recs("en_qa_ropes"), "ropes", "ropes", rng)
    out += convert_extractive(recs("pl_qa_poquad"), "poquad", "poquad", rng)
    out += convert_instructions(recs("en_instructions_rasbt"), "instructions")
    out += convert_translation(recs("enpl_parallel_tatoeba"), "tatoeba", rng)
    return out
