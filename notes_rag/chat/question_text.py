"""A typed question made safe for retrieval and the model: text, clean, and short enough.

    text, warning = decode_question(raw)     # bytes or a str from argv/stdin -> text (+ a warning)
    question = clean_question(text)          # escape and control sequences out; no word: an error
    short = fit_question(tok, question, 160) # what the model reads of a pasted paragraph

`decode_question`: a question that is not valid UTF-8 (a cp1250 or ISO-8859-2 terminal; Python
hands such argv/stdin bytes over as lone surrogates) is read as UTF-8 with its bad bytes replaced
when it is mostly UTF-8 (as notes are, fileio.decode_note), else in the legacy Polish encoding
when that decodes it to letters, else with the bytes replaced; one warning line says which.

`clean_question`: ANSI escape sequences (colours pasted from a terminal: `ESC[31m`), OSC titles,
C0/C1 control characters and stray replacement characters are removed before retrieval and the
model ever see them; whitespace runs become one space. A question with no letter or digit left
raises `NotesRagError("ask a question with words")`.

`fit_question`: the model's input holds the question, the previous one, the system prompt and the
passages in `seq_len - max_new_tokens` tokens (model/reader.py). A pasted paragraph longer than
the question budget (`question_budget`) is read, by retrieval and by the model alike, as its
sentences ending in "?" (the last first, as many as fit; without one, its last sentences); the
conversation keeps it whole. Measured (benchmarks/long_questions.py, docs/RELIABILITY.md, dev
questions pasted into 3,000-5,000 characters of the notes): the first tokens hold the question
only when it comes first, the last tokens only when it comes last; the asking sentences keep it
in 0.65-0.95 of pastes. Retrieval on the whole paste (or on context kept around the question)
is pulled to the pasted notes: the answer was the question's own in 0.05-0.10 of pastes, against
0.20-0.35 when retrieval reads the asking sentences.
"""

from __future__ import annotations

import re
import unicodedata

from notes_rag.errors import NotesRagError

# The longest question of the eval sets is 29 tokens (dev2, 121 questions; the quiz sets' 62;
# release tokenizer, measured 2026-12-06): 160 never shortens a typed question, and leaves the
# passages >= 600 of the release model's 904 input tokens. A smaller model gets a quarter of
# what its system prompt leaves; the previous question half the question's budget.
QUESTION_TOKENS = 160
MIN_QUESTION_TOKENS = 16


def question_budget(room: int, system_tokens: int) -> int:
    """Tokens the question may take of a model input of `room` tokens opening with a system
    prompt of `system_tokens`."""
    return max(MIN_QUESTION_TOKENS, min(QUESTION_TOKENS, (room - system_tokens) // 4))


NO_WORDS = "ask a question with words"

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves (ESC[31m)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # two-character escapes (ESC c, ESC (B)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"[^.?!…\n]*(?:[.?!…]+|\n|$)")
_POLISH = set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")


def decode_question(raw: str | bytes) -> tuple[str, str | None]:
    """(text, one-line warning or None) of a question as it came in (see the module doc)."""
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
            return raw, None
        except UnicodeEncodeError:  # lone surrogates: the undecodable bytes of argv or stdin
            raw = raw.encode("utf-8", "surrogateescape") if _escaped_only(raw) else raw.encode("utf-8", "replace")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    if bad <= sum(1 for ch in text if ord(ch) >= 0x80 and ch != "\ufffd"):  # mostly UTF-8 (fileio.py)
        return text, f"the question was not valid UTF-8: {bad} byte(s) replaced"
    for enc in ("cp1250", "iso-8859-2"):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        if any(ch in _POLISH for ch in text) and not any(unicodedata.category(ch) == "Cc" for ch in text.strip()):
            return text, f"the question was not UTF-8: read as {enc}"
    text = raw.decode("utf-8", "replace")
    return text, f"the question was not valid UTF-8: {text.count(chr(0xFFFD))} byte(s) replaced"


def _escaped_only(text: str) -> bool:
    """True when every surrogate in `text` is a surrogateescape'd byte (U+DC80-U+DCFF)."""
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in text)


def strip_controls(text: str) -> str:
    """`text` without escape sequences, control characters and replacement characters; every
    whitespace run one space."""
    text = _ANSI.sub("", text)  # zero-width on screen: "\x1b[31mword" reads "word"
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cs") or ch == "\ufffd" or ch in "\u2028\u2029" else ch for ch in text
    )
    return _SPACE.sub(" ", text).strip()


def has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def clean_question(text: str) -> str:
    """The question as retrieval and the model read it; `NotesRagError` when no word is left."""
    text = strip_controls(text)
    if not has_words(text):
        raise NotesRagError(NO_WORDS)
    return text


def sentences(text: str) -> list[str]:
    return [s for s in (m.group(0).strip() for m in _SENTENCE.finditer(text)) if s]


def fit_question(tok, question: str, budget: int = QUESTION_TOKENS) -> str:
    """`question` when it fits `budget` tokens, else its sentences that ask (ending in "?"), the
    last first, as many as fit, in text order; without one, its last sentences. A sentence longer
    than the budget keeps its last `budget` tokens (where a run-on question asks)."""
    if len(tok.encode(question)) <= budget:
        return question
    parts = sentences(question)
    sizes = [len(tok.encode(s)) + 1 for s in parts]
    asking = [i for i, s in enumerate(parts) if s.endswith("?")]
    order = asking[::-1] if asking else list(range(len(parts) - 1, -1, -1))
    keep, used = [], 0
    for i in order:
        if used + sizes[i] > budget:
            if asking:
                continue  # a shorter question before it may still fit
            break  # the last sentences, contiguous
        keep.append(i)
        used += sizes[i]
    if not keep:
        return tok.decode(tok.encode(parts[order[0]])[-budget:]).strip()
    return " ".join(parts[i] for i in sorted(keep))


def long_question_note(short: str, question: str) -> str:
    """The one note an answer to a shortened question carries."""
    return (
        f"your question is long: retrieval and the model read its asking part ({len(short.split())} of "
        f"{len(question.split())} words)"
    )
