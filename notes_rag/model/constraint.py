"""Constrained decoding: an answer cannot write a content word that its sources do not contain.

Words are the lowercase runs of letters and digits (`text.lowercase_words`). A word may be
produced when it is in the allowed set: the words of the passages and the question, the glue
words below, and the words of fixed sentences the caller adds (the abstentions); a number of at
most three digits right after "[" is a citation and always allowed. Punctuation and whitespace
are free. So every text the model streams is final: a word that could not be finished from
the sources is never started.

The check works on the tokenizer's bytes: `WordConstraint` keeps the current partial word (and
the bytes of a character split across tokens), and a token is allowed when every word it
finishes is allowed and the word it leaves open is a prefix of an allowed one (bisect in a
sorted list). `candidates` applies it to the best tokens of a step's distribution.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from notes_rag.model.reader import _STOP
from notes_rag.text import lowercase_words

# Words an answer may use without a source: the question stop words (reader.py) and the glue of
# a short answer sentence, in English and Polish.
GLUE_WORDS = _STOP | frozenset(
    """
    than then so there their they them he she we you one both each all some any only more most
    such other also about after before between during over under up out if but because will would
    should may might must s t ll ve re d m
    też także jako albo więc gdy gdyż bo czyli tylko bardzo jednak już ma mają może można być był
    była było były będzie są sa we tej tych tymi temu tę ją je go mu im nim niej nich oraz
    się sie jest który ktora które którego której których wiele dwa dwie jeden jedna jedno
    """.split()
)
CANDIDATES = 64  # best tokens of a step checked before falling back to the whole vocabulary


def _utf8_length(lead: int) -> int:
    """Bytes of the character a UTF-8 lead byte starts (0 for a byte that cannot start one)."""
    if lead < 0x80:
        return 1
    return 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0


def _split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """(text, tail): the complete characters of `data` and the bytes of an unfinished last one;
    None when `data` is not valid UTF-8 even with its last character unfinished."""
    for cut in range(min(3, len(data)) + 1):
        head, tail = data[: len(data) - cut], data[len(data) - cut :]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not tail or (len(tail) < _utf8_length(tail[0]) and all(b & 0xC0 == 0x80 for b in tail[1:])):
            return text, tail
    return None


@dataclass(frozen=True)
class _State:
    word: str = ""  # lowercase letters/digits of the open word
    tail: bytes = b""  # bytes of a character split across tokens
    before: str = ""  # the character before the open word ("[" makes digits a citation)


class WordConstraint:
    """Which next tokens keep the answer inside the allowed words (see the module docstring)."""

    def __init__(self, token_bytes, special_ids: Iterable[int], allowed: Iterable[str], stop_ids: Iterable[int]):
        self.token_bytes = token_bytes
        self.special = set(special_ids)
        self.stop = set(stop_ids)
        self.words = sorted(set(allowed))
        self.word_set = set(self.words)
        self.word_bytes = sorted(w.encode("utf-8") for w in self.words)
        self.state = _State()

    @classmethod
    def for_sources(cls, tok, sources: Iterable[str], fixed: Iterable[str] = (), stop_ids: Iterable[int] = ()):
        """The constraint of an answer from `sources` (passages, question); `fixed` sentences
        (e.g. chat/format.py ABSTAIN) may be written word for word."""
        allowed = set(GLUE_WORDS)
        for text in [*sources, *fixed]:
            allowed.update(lowercase_words(text))
        return cls(tok.token_bytes, tok.special_ids.values(), allowed, stop_ids)

    def _prefix(self, word: str, before: str) -> bool:
        if before == "[" and word.isdigit() and len(word) <= 3:
            return True
        i = bisect_left(self.words, word)
        return i < len(self.words) and self.words[i].startswith(word)

    def _complete(self, word: str, before: str) -> bool:
        return word in self.word_set or (before == "[" and word.isdigit() and len(word) <= 3)

    def _after(self, state: _State, token: int) -> _State | None:
        """The state after `token`, or None when the token is not allowed."""
        if token in self.stop:
            return state if not state.tail and (not state.word or self._complete(state.word, state.before)) else None
        if token in self.special:
            return None
        split = _split_utf8(state.tail + self.token_bytes(token))
        if split is None:
            return None
        text, tail = split
        word, before = state.word, state.before
        for ch in text:
            if ch.isalnum():
                word += ch.lower()
                if not self._prefix(word, before):
                    return None
            else:
                if word and not self._complete(word, before):
                    return None
                word, before = "", ch
        if tail:  # an unfinished character: a letter that continues an allowed word, or a separator
            partial = word.encode("utf-8") + tail
            i = bisect_left(self.word_bytes, partial)
            continues = i < len(self.word_bytes) and self.word_bytes[i].startswith(partial)
            if not continues and word and not self._complete(word, before):
                return None
        return _State(word, tail, before)

    def allows(self, token: int) -> bool:
        return self._after(self.state, token) is not None

    def candidates(self, logp, greedy: bool, pointer=None) -> list[int]:
        """Allowed ids among the CANDIDATES most likely of log-probabilities (V,), best first:
        only the best one when `greedy`. The whole vocabulary is searched, best first, only
        when none of them is allowed; empty when no token is. `logp` is a numpy array or a torch
        tensor (the numpy and the torch decoder): no torch here, so the chat starts without it.
        `pointer` (the copy attention, model/unit_copy.py's) does not matter to words."""
        logp = np.asarray(logp.cpu() if hasattr(logp, "cpu") else logp)
        best = np.sort(np.argpartition(-logp, min(CANDIDATES, logp.size) - 1)[:CANDIDATES])
        # a stable sort of ids in order: equal scores go to the lower id, as argmax does
        order = best[np.argsort(-logp[best], kind="stable")].tolist()
        allowed = (
            [i for i in order if self.allows(i)] if not greedy else next(([i] for i in order if self.allows(i)), [])
        )
        if not allowed:
            seen = set(order)
            rest = (i for i in np.argsort(-logp, kind="stable").tolist() if i not in seen)
            allowed = next(([i] for i in rest if self.allows(i)), [])
        return allowed

    def push(self, token: int) -> None:
        """Advance past a chosen token (which must be allowed)."""
        state = self._after(self.state, token)
        if state is None:
            raise ValueError(f"token {token} is not allowed here")
        self.state = state
