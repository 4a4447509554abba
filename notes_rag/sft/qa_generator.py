"""Grounded QA generated from pretraining text (Polish and English), as `sft.kit.Example`s.

The kit has little Polish QA and nothing shaped like study notes, so we template questions from
sentences of the pretraining documents (`shared/data/pretrain/*.jsonl.xz`). Every answer is a
sentence (or a clause of at most ~40 words) copied from the paragraph it came from, so it is
grounded by construction and cited by `sft/build.py`. Question kinds:

- definition: "X to …", "X jest językiem …", "X (…) – …" / "X is a …" -> "Czym jest X?",
  "Co oznacza termin „X”?", "Kim był X?" (Wikipedia biographies) / "What is X?"
- enumeration: "X obejmuje A, B i C" / "X includes A, B, and C" -> "Co obejmuje X?" /
  "What does X include?" (also zawiera, składa się z, umożliwia, oferuje, obsługuje, …)
- number/date: "X został wydany w 2008" -> "Kiedy został wydany X?"; "X was released in 2008" ->
  "When was X released?"; "X ma 25 gatunków" -> "Ile gatunków ma X?" (only numbers after which
  Polish takes the genitive plural, so the template stays grammatical); "W 1937 …" / "In 1937, …"
  -> "Co wydarzyło się w 1937 roku według notatek o „T”?"; "(ur. … 1916 …)" -> "Kiedy urodził się X?"
- topic: "Co mówią moje notatki na temat „T”?" / "What do my notes say about T?" answered by the
  first sentence(s) of the paragraph (T a Wikipedia title or a defined term). Quoting T avoids
  having to inflect it in Polish.
- follow-ups: two or three definitions of one document as one conversation, later turns elliptic
  ("A Y?", "A czym jest Y?" / "And Y?", "What about Y?"), like a user asking "A Llama 3?".
- cross-lingual (small share, `GenConfig.xling_rate`): a definition of a shared technical term
  (ASCII, e.g. "Python", "API") asked in the other language; the answer is the passage sentence
  copied verbatim (see docs/CHAT_FORMAT.md).

Filters keep questions grammatical: terms of at most 4 words starting with a capital or digit, no
pronouns/adverbs/prepositions as subjects, no markup or URLs, no numbers-only terms.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from notes_rag.sft.clauses import answer_clause, slug
from notes_rag.sft.kit import QA, Anchor, Example, text_key
from notes_rag.sft.qa_templates import QUESTIONS, UGLY, sentence_items
from notes_rag.text import n_words, sentence_spans


@dataclass
class GenConfig:
    max_per_doc: int = 10  # items per document, so long manuals do not dominate
    followup_rate: float = 0.3  # share of eligible documents that yield a follow-up conversation
    xling_rate: float = 0.25  # share of shared-term definitions also asked in the other language
    min_paragraph_words: int = 8


@dataclass
class _Item:
    question: str
    kind: str
    para: int
    start: int  # of the answer in the paragraph
    answer: str
    term: str = ""
    shared: bool = False  # a shared technical term, eligible for a cross-lingual variant


def doc_title_file(source: str) -> tuple[str, str, bool]:
    """(heading, file label, is_entity) from a pretrain record's `source` tag."""
    m = re.search(r"wikipedia\.org/wiki/([^\s]+)", source)
    if m:
        title = m.group(1).replace("_", " ")
        return title, f"wikipedia/{slug(title)}.md", True
    path = re.split(r"[@:]", source, maxsplit=1)[-1]
    parts = [p for p in re.split(r"[/:]", path) if p]
    stem = re.sub(r"\.\w+$", "", parts[-1]) if parts else "notes"
    parent = parts[-2] if len(parts) > 1 else "notes"
    if stem.lower() in {"index", "readme", "intro", "introduction"} and len(parts) > 1:
        stem, parent = parent, parts[-3] if len(parts) > 2 else "notes"
    title = re.sub(r"[_-]+", " ", stem).strip()
    title = title[:1].upper() + title[1:]
    return title, f"{slug(parent)}/{slug(stem)}.md", False


def generate_doc(record: dict, rng: random.Random, cfg: GenConfig = GenConfig()) -> tuple[list[Example], list[Anchor]]:
    """Examples generated from one pretraining document, and all its paragraphs as anchors
    (the distractor pool). The split key is the document, so no paragraph crosses splits."""
    lang = record.get("lang", "en")
    title, file, entity = doc_title_file(record.get("source", ""))
    key = text_key(record.get("source", "") + "\n" + record["text"][:200])
    paras = [p.strip() for p in record["text"].split("\n\n") if n_words(p) >= cfg.min_paragraph_words]
    anchors = [Anchor(text=p, title=title, file=file, key=key) for p in paras]
    lower_words = Counter(re.findall(r"\w+", record["text"]))  # word -> count, case kept
    items: list[_Item] = []
    for pi, p in enumerate(paras):
        for a, b in sentence_spans(p):
            s = p[a:b]
            if n_words(s) < 5 or UGLY.search(s):
                continue
            for kind, q, term, shared in sentence_items(s, lang, lower_words, title, entity, rng):
                start = a + (s.find(term) if term and term in s else 0)
                ans = answer_clause(p, start, start + max(1, len(term)))
                if n_words(q) > 25 or n_words(ans) < 4:
                    continue
                items.append(_Item(q, kind, pi, p.find(ans), ans, term, shared))
    # topic questions: a Wikipedia title over its lead, or a defined term over its definition
    topic_q = QUESTIONS["topic_pl" if lang == "pl" else "topic_en"]
    if entity and paras:
        ans = _lead(paras[0])
        items.append(_Item(rng.choice(topic_q).format(t=title), "topic", 0, 0, ans))
    for it in [i for i in items if i.kind == "def" and i.term]:
        if rng.random() < 0.25:
            ans = _lead(paras[it.para][it.start :]) if it.start >= 0 else it.answer
            items.append(_Item(rng.choice(topic_q).format(t=it.term), "topic", it.para, it.start, ans, it.term))
    items = [i for i in items if i.start >= 0]
    rng.shuffle(items)
    seen, picked = set(), []
    for it in items:
        if it.question not in seen and len(picked) < cfg.max_per_doc:
            seen.add(it.question)
            picked.append(it)
    return _examples(picked, anchors, lang, rng, cfg), anchors


def _lead(text: str, max_words: int = 40) -> str:
    """The first sentence(s) of `text`, at most `max_words` (the first sentence cut to a clause)."""
    spans = sentence_spans(text)
    if not spans:
        return text
    out_end = spans[0][1]
    for _, b in spans[1:]:
        if n_words(text[spans[0][0] : b]) > max_words:
            break
        out_end = b
    if n_words(text[spans[0][0] : out_end]) > max_words:
        return answer_clause(text, spans[0][0], spans[0][0] + 1, max_words)
    return text[spans[0][0] : out_end]


def _qa(it: _Item, anchor: int, question: str | None = None) -> QA:
    return QA(
        question=question or it.question, anchor=anchor, span=it.answer, start=it.start, style="span", answer=it.answer
    )


def _examples(
    items: list[_Item], anchors: list[Anchor], lang: str, rng: random.Random, cfg: GenConfig
) -> list[Example]:
    src, pool = f"gen_{lang}", "gen_" + lang
    out: list[Example] = []
    defs = [i for i in items if i.kind == "def" and i.term]
    terms = {i.term.lower() for i in defs}
    if len(defs) >= 2 and len(terms) >= 2 and rng.random() < cfg.followup_rate:
        chain, used = [], set()
        for it in defs:
            if it.term.lower() not in used:
                chain.append(it)
                used.add(it.term.lower())
            if len(chain) == rng.choice((2, 3)):
                break
        paras = sorted({i.para for i in chain})
        ex = Example(source=src, lang=lang, pool=pool, anchors=[anchors[p] for p in paras], qas=[])
        for n, it in enumerate(chain):
            q = None if n == 0 else rng.choice(QUESTIONS["follow_" + lang]).format(t=it.term)
            ex.qas.append(_qa(it, paras.index(it.para), q))
        out.append(ex)
        items = [i for i in items if i not in chain]
    other = "en" if lang == "pl" else "pl"
    for it in items:
        out.append(Example(source=src, lang=lang, pool=pool, anchors=[anchors[it.para]], qas=[_qa(it, 0)]))
        if it.shared and rng.random() < cfg.xling_rate:
            q = rng.choice(QUESTIONS["def_" + other]).format(t=it.term)
            out.append(
                Example(source="gen_xling", lang=other, pool=pool, anchors=[anchors[it.para]], qas=[_qa(it, 0, q)])
            )
    return out


def generate(
    records: Iterable[dict],
    rng: random.Random,
    cfg: GenConfig = GenConfig(),
    max_items: int | None = None,
    pool: str | None = None,
) -> tuple[list[Example], list[Anchor]]:
    """Examples from a stream of pretraining records (one file), at most `max_items`; `pool` names
    the distractor pool (default: one per language)."""
    examples, anchors = [], []
    for r in records:
        ex, an = generate_doc(r, rng, cfg)
        for e in ex:
            e.pool = pool or e.pool
        examples += ex
        anchors += an
    if max_items is not None and len(examples) > max_items:
        examples = rng.sample(examples, max_items)
    return examples, anchors
