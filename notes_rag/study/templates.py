"""Template questions and cloze cards: the baseline writer, and the fallback when our GPT's
question fails the checks (study/checks.py).

- A definition asks for what its term is ("Czym jest słownik?", "What are open-source models?";
  an acronym: "Co oznacza RAG?", "What does RAG stand for?").
- A list asks for its items ("Wymień: fazy treningu modelu.", "List: examples of ...").
- A cloze card shows the note line with the key term blanked: a number, a name, a list's items
  or a definition's term. Numbers and names get cloze cards only: a template cannot phrase
  "when" or "who" questions about an arbitrary line correctly in Polish.
"""

from __future__ import annotations

import re

from notes_rag.study.spans import Span
from notes_rag.text import fold

BLANK = "_____"
CLOZE_PROMPT = {"pl": "Uzupełnij lukę: ", "en": "Fill in the blank: "}
MIN_CLOZE_WORDS = 6  # words left around the blank: fewer is a slide fragment, not a recallable line
MAX_CLOZE_WORDS = 35  # more is a flattened table or a paragraph, not one line to recall
_PL_ADJ = ("ny", "wy", "ki", "zy", "ty", "ly", "czy", "ne", "we", "kie", "na", "wa", "ka")
# A line opening with one of these leans on the line before it for what it is about.
_DEICTIC = frozenset("czesto to ten ta te tu calosc zatem this it they these those here then so thus".split())
_ACRONYM = re.compile(r"^[A-Z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*$")


def _plural(span: Span, lang: str) -> bool:
    """Whether the defined term is plural: its copula ("X are", "X są"); without one ("X to Y",
    "X – Y", "X: Y") the ending of its head noun: in Polish the first word, after a leading
    adjective ("tokeny", "duże modele", not "duży model"), in English the last ("attacks")."""
    after = fold(span.line)[len(fold(span.term)) :].split()[:1]
    if after and after[0] in ("are", "were", "sa"):
        return True
    if after and after[0] in ("is", "was", "jest"):
        return False
    ws = fold(span.term).split() or [""]
    if lang == "pl":
        head = ws[1] if len(ws) > 1 and ws[0].endswith(_PL_ADJ) else ws[0]
        return head.endswith(("y", "i")) or (head.endswith("e") and not head.endswith("ie"))
    return ws[-1].endswith("s") and not ws[-1].endswith(("ss", "us", "is")) and not span.term.isupper()


def _as_in_sentence(term: str) -> str:
    """The term as it reads mid-sentence: a first word capitalised only because it opened its
    line ("Identyfikatory", "Open-source") is lower-cased; names and acronyms are kept."""
    first, _, rest = term.partition(" ")
    if first in ("A", "An", "The") or (first[:1].isupper() and first[1:].islower() and not rest[:1].isupper()):
        return (first.lower() + " " + rest).strip()
    return term


def _expands(acronym: str, answer: str) -> bool:
    """Whether `answer` spells `acronym` out: its words' initials hold the acronym's letters in
    order ("RAG" – "Retrieval Augmented Generation")."""
    initials = "".join(w[0] for w in answer.replace("-", " ").split() if w[:1].isalpha()).lower()
    letters = [c for c in acronym.lower() if c.isalpha()]
    it = iter(initials)
    return bool(letters) and all(c in it for c in letters)


def template_question(span: Span, lang: str) -> str | None:
    """The template question for a definition or list span; None for the other kinds."""
    term = _as_in_sentence(span.term.strip())
    if span.kind == "definition":
        if _ACRONYM.match(term) and _expands(term, span.answer):
            return f"Co oznacza {term}?" if lang == "pl" else f"What does {term} stand for?"
        plural = _plural(span, lang)
        if lang == "pl":
            return f"Czym {'są' if plural else 'jest'} {term}?"
        return f"What {'are' if plural else 'is'} {term}?"
    if span.kind == "list":
        intro = term[0].lower() + term[1:] if term[1:2].islower() else term
        return f"Wymień: {intro}." if lang == "pl" else f"List: {intro}."
    return None


def cloze(line: str, answer: str, lang: str) -> str | None:
    """`line` with `answer` blanked (its one occurrence, matched on the folded text), prefixed by
    the language's instruction; None when the answer is not in the line exactly once or the
    blanked line says too little to answer from."""
    folded, target = fold(line), fold(answer)
    if not target or folded.count(target) != 1 or len(line) != len(folded):
        # fold() collapses whitespace; on a line where that changes offsets, search the raw text
        idx = [m.start() for m in re.finditer(re.escape(answer), line)]
        if len(idx) != 1:
            return None
        start = idx[0]
    else:
        start = folded.index(target)
    rest = line[:start] + BLANK + line[start + len(answer) :]
    if not MIN_CLOZE_WORDS <= len(fold(rest.replace(BLANK, "")).split()) <= MAX_CLOZE_WORDS:
        return None
    first = fold(line.split()[0]).strip(",.:") if line.split() else ""
    if first in _DEICTIC:  # "Często jest to ___": what "to" is, the line does not say
        return None
    return CLOZE_PROMPT.get(lang, CLOZE_PROMPT["en"]) + rest


def cloze_answer(span: Span) -> str:
    """What a cloze card of `span` blanks: the term of a definition, else the answer."""
    return span.term if span.kind == "definition" else span.answer
