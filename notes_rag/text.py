"""Text rules shared by indexing, retrieval, SFT data, the chat guard and evaluation.

- *folding*: `fold` makes a whole text comparable (case folded, diacritics stripped: ą→a, ł→l,
  whitespace runs collapsed); `strip_diacritics` is its diacritics step alone (BM25 indexes a
  word both as written and stripped).
- *words*: `words` are the maximal runs of letters and digits of the folded text (markdown and
  punctuation drop out); `lowercase_words` the same runs of the lowercased text, diacritics
  kept (BM25 terms); `n_words` counts whitespace-separated words (chunk and passage sizes);
  `looks_like_title` is the rule for a line that titles the lines after it;
  `stems` cut folded words to a 5-letter prefix, a crude stem that survives Polish inflection.
- *sentences*: `sentence_spans` splits prose into sentences with character offsets, aware of
  abbreviations (`ur.`, `np.`, `e.g.`); `chunk_sentences` splits a retrieved chunk line by line,
  leaving out markdown headings (they echo the question's topic without answering it).
- *best sentence*: `best_sentence` is the chunk sentence sharing the most stems with a question
  (the extractive baseline and the chat's grounding guard); `best_sentence_span` the prose
  sentence sharing the most lowercase words with a query (SFT data: answers and passage centres).
- *what the model reads*: `clean_markup` turns a note's markdown into the plain text our GPT reads
  and may copy (image placeholders, link targets, emphasis markers and HTML tags go; link text
  stays), line for line; `unit_spans` splits that text into the units (sentences or lines) the
  model input, the relevance features and the index's unit vectors are computed over.
"""

from __future__ import annotations

import re
import unicodedata

# Letters that Unicode does not decompose into base letter + combining mark.
_EXTRA_FOLD = str.maketrans({"ł": "l", "Ł": "l", "ø": "o", "đ": "d", "ß": "ss"})
_WORD = re.compile(r"[^\W_]+")
_LINE_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
STEM = 5  # letters of a stem

# Abbreviations after which a period does not end a sentence (lower-cased, without the period).
_ABBR = frozenset(
    """
    ur zm np tzw m.in ok r gr ang łac niem fr wg św im dr prof ks hab inż mgr tj itd itp itp
    al ul godz min maks tys mln mld pt płn płd wsch zach e.g i.e vs mr mrs ms st no fig etc
    approx cf al jr sr inc ltd co
    """.split()
)
_BOUNDARY = re.compile(r"[.!?…]+[\"”»')\]]*\s+|\n+")
_CONTENT_WORD = re.compile(r"\w\w+")


# -- folding and words -------------------------------------------------------------------------


def strip_diacritics(text: str) -> str:
    """'źródło' -> 'zrodlo' (ł has no Unicode decomposition, it is mapped by hand); case is kept."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_EXTRA_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold(text: str) -> str:
    """Case-fold, strip diacritics (ą→a, ł→l) and collapse whitespace, for lenient matching."""
    return " ".join(strip_diacritics(text.casefold()).split())


def words(text: str) -> list[str]:
    """Folded words: maximal runs of letters and digits (markdown and punctuation drop out)."""
    return _WORD.findall(fold(text))


def lowercase_words(text: str) -> list[str]:
    """The lowercased words of a text, in order, diacritics kept (BM25 terms)."""
    return _WORD.findall(text.lower())


def n_words(text: str) -> int:
    """Whitespace-separated words: the size of a chunk or passage."""
    return len(text.split())


_TITLE_END = tuple(".,;:!?")


def looks_like_title(line: str) -> bool:
    """A short line without closing punctuation: in slide exports and plain notes it titles the
    lines after it (the chunker's headings, the unit scorer's structure)."""
    line = line.strip()
    return (
        "\n" not in line
        and 0 < n_words(line) <= 8
        and not line.endswith(_TITLE_END)
        and line[0].isalnum()
        and "://" not in line
    )


def stems(text: str) -> set[str]:
    """5-letter prefixes of the folded words of 3+ letters: modelu/modele → model."""
    return {w[:STEM] for w in words(text) if len(w) >= 3}


def content_words(text: str) -> set[str]:
    """Lowercase words of 2+ characters, numbers of 1-2 digits left out."""
    return {w for w in _CONTENT_WORD.findall(text.lower()) if not w.isdigit() or len(w) > 2}


# -- lines -------------------------------------------------------------------------------------


def line_starts(text: str) -> list[int]:
    """Character offsets at which the lines of `text` begin (after each newline)."""
    return [0, *(m.end() for m in re.finditer("\n", text))]


def line_word_starts(text: str) -> set[int]:
    """Offsets into `words(text)` at which the lines of `text` begin."""
    starts, offset = set(), 0
    for line in text.splitlines():
        starts.add(offset)
        offset += len(words(line))
    return starts


# -- sentences ---------------------------------------------------------------------------------


def _strip_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    seg = text[start:end].rstrip()
    if not seg.strip():
        return None
    lead = len(seg) - len(seg.lstrip())
    return start + lead, start + len(seg)


def _is_abbreviation(text: str, start: int, m: re.Match) -> bool:
    """Whether the period of boundary `m` ends an abbreviation or an initial, not a sentence."""
    if text[m.start()] != ".":
        return False
    before = text[start : m.start()].split()
    last = before[-1].lower() if before else ""
    nxt = text[m.end() : m.end() + 1]
    return last in _ABBR or (len(last) == 1 and last.isalpha()) or nxt.islower() or nxt.isdigit()


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character ranges of the sentences of `text`, whitespace excluded."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if _is_abbreviation(text, start, m):
            continue
        span = _strip_span(text, start, m.end())
        if span:
            spans.append(span)
        start = m.end()
    span = _strip_span(text, start, len(text))
    if span:
        spans.append(span)
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of `text` (see `sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text)]


def chunk_sentences(chunk: str) -> list[str]:
    """Sentences of a retrieved chunk: its lines split after . ! ?; markdown heading lines are
    titles that echo the question's topic without answering it, so they are left out."""
    out = []
    for line in chunk.splitlines():
        if line.lstrip().startswith("#"):
            continue
        out.extend(s.strip() for s in _LINE_SENTENCE_END.split(line) if words(s))
    return out


def best_sentence(question: str, chunk: str) -> str:
    """The sentence of `chunk` sharing the most word stems with the question (first on ties)."""
    q = stems(question)
    best, best_score = "", -1
    for s in chunk_sentences(chunk):
        score = len(q & stems(s))
        if score > best_score:
            best, best_score = s, score
    return best


def best_sentence_span(text: str, query: str) -> tuple[int, int]:
    """The span of the sentence of prose `text` sharing the most content words with `query`
    (first on ties; the whole text when it has no sentence)."""
    q = content_words(query)
    spans = sentence_spans(text) or [(0, len(text))]
    return max(spans, key=lambda s: len(q & content_words(text[s[0] : s[1]])))


# -- what the model reads ------------------------------------------------------------------------

_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)|^\s*\[(?:image|obraz|img)\]\s*$", re.IGNORECASE | re.MULTILINE)
_LINK = re.compile(r"\[([^\]\n]+)\]\((?:[^)\s\n]+)(?:\s+\"[^\"\n]*\")?\)")
_ORPHAN_DOT = re.compile(r"^[ \t]*·[ \t]*", re.MULTILINE)  # a slide's " · " joiner left before a dropped image
_HTML = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]*)?/?>")
# Emphasis markers around a word run (not a lone `*` bullet, not `a * b`): **x**, *x*, ~~x~~; `__x__`
# is left alone (Python's `__init__` is far commoner in these notes than underscore emphasis)
_EMPHASIS = re.compile(r"(\*\*|~~)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")


def clean_markup(text: str) -> str:
    """The note text as our GPT reads it: images and `[Image]` lines dropped, `[text](url)` as
    `text`, HTML tags and emphasis markers removed. Lines stay lines (a line emptied by it stays as
    an empty line), so the note's structure and line count are kept."""
    text = _ORPHAN_DOT.sub("", _IMAGE.sub("", text))
    text = _LINK.sub(r"\1", text)
    text = _HTML.sub("", text)
    return _EMPHASIS.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(3), text)


def unit_spans(text: str) -> list[tuple[int, int]]:
    """The units of a passage's text: contiguous character ranges covering it, one per sentence or
    line (`sentence_spans`), each starting at the end of the previous one so its leading
    whitespace belongs to it. Defined once: the model input (model/reader.py), its relevance
    features and the index's unit vectors all use these units."""
    out: list[tuple[int, int]] = []
    for _, end in sentence_spans(text):
        out.append((out[-1][1] if out else 0, end))
    if out:
        out[-1] = (out[-1][0], len(text))
    return out


def unit_texts(text: str) -> list[str]:
    """The units' texts, stripped (what the encoder embeds for each unit)."""
    return [text[a:b].strip() for a, b in unit_spans(text)]
