"""Whole-unit answers: an answer that copies from a passage starts where a unit starts and copies
to that unit's end before it may stop, cite or turn elsewhere; its citation names the passage
the copied unit is in.

The units are the reader's (model/reader.py `Unit`: the lines and sentences that `can_answer`,
`text.unit_spans`). Student notes put one thought on a line; the copy head, trained on answers
that are often the end of a line ("32 and 256" of "Between 32 and 256, preferably …"), starts
inside a line in about half of its answers and stops before the line ends, losing the words
that make the line an answer (issue 29, notes_qa val and test, 2026-12-07: docs/GENERATOR.md,
"Whole-unit answers").

Whether to answer, and whether to go on to the next unit, stays the model's choice. At the first
step its own token stands when it is an abstention start or a stop; otherwise the answer starts
at the first worded token of a unit: with a `prior` (the chat's; chat/turn_input.py
`unit_prior`), the unit whose copy attention summed over its tokens, times the unit scorer's
probability to the `prior_weight`, is highest (`_weighed_unit`: the model knows note structure,
the scorer what the encoder sees of each line; notes_qa test key facts 0.42 -> 0.46,
docs/GENERATOR.md); without one, the unit holding the source position of that token the copy
attention weighs most (the decoder's `pointer`), when that position is in a unit. While the tokens written
are a run of that unit's tokens (`live`: the position the run stands at), the next token must
continue it, until it reaches the unit's last word. Off a run (a citation, a joining word, a
copy from the question), the answer is free, except that a citation's number, once `[` is
written, must be a passage a run was copied from: the model wrote its own number before, and
named another passage than the one its words came from for 22 of 99 answers on dev2
(2026-12-07).

`UnitCopy` has `WordConstraint`'s interface (`candidates`, `push`) and applies that constraint
too, so the decode loops (model/sampling.py `decode_copy`) take either.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from notes_rag.model.constraint import WordConstraint
from notes_rag.model.reader import ReaderInput
from notes_rag.text import unit_spans


def prior_by_unit(passages: list[tuple[str, str]], per_passage: list[list[float]]) -> dict[tuple[int, int], float]:
    """Per-passage unit log-probabilities (chat/turn_input.py `unit_prior`, over `text.unit_spans`
    of each passage text) keyed as the reader's `Unit`s are: (passage number, char start)."""
    return {
        (n, a): lp
        for n, ((_, text), lps) in enumerate(zip(passages, per_passage), 1)
        for (a, _), lp in zip(unit_spans(text), lps)
    }


def _has_word(token_bytes: bytes) -> bool:
    return any(ch.isalnum() for ch in token_bytes.decode("utf-8", errors="ignore"))


class UnitCopy:
    """The whole-unit rule over a reader input (see the module docstring), on top of `words`."""

    def __init__(
        self,
        token_bytes,
        inp: ReaderInput,
        words: WordConstraint | None,
        free_starts: Iterable[int] = (),
        stop_ids: Iterable[int] = (),
        cite_open: Iterable[int] = (),
        cite_numbers: dict[int, int] | None = None,
        prior: dict[tuple[int, int], float] | None = None,
        prior_weight: float = 0.0,
    ):
        self.ids = inp.ids
        self.offsets = inp.offsets
        self.cite_open = set(cite_open)  # the tokens that open a citation: "[" and " ["
        self.cite_numbers = cite_numbers or {}  # passage number -> the token that writes it
        self.copied: set[int] = set()  # passages the answer's unit runs were copied from
        self._last: int | None = None
        self.words = words
        self.free_starts = set(free_starts)  # first tokens of the abstentions
        self.unit_start: dict[int, int] = {}  # position -> its unit's first worded position
        self._start: int | None = None
        self.starts: list[int] = []  # per unit: the position of its first token with a word
        self.ends: set[int] = set()  # positions from a unit's last word on: it may end there
        self.unit_end: dict[int, int] = {}  # position -> last position of its unit
        # per unit: (first worded position, its token range, the scorer's log-probability)
        self.choices: list[tuple[int, int, int, float]] = []
        self.prior_weight = prior_weight if prior else 0.0
        for u in inp.units:
            worded = [j for j in range(u.first, u.last + 1) if _has_word(token_bytes(inp.ids[j]))]
            if not worded:
                continue
            if prior:
                self.choices.append((worded[0], u.first, u.last, prior.get((u.passage, u.start), -np.inf)))
            self.starts.append(worded[0])
            self.unit_start.update(dict.fromkeys(range(u.first, u.last + 1), worded[0]))
            self.ends.update(range(worded[-1], u.last + 1))
            self.unit_end.update(dict.fromkeys(range(u.first, u.last + 1), u.last))
        # positions the copy run stands at; None before the first token, [] off a run (free)
        self.live: list[int] | None = None if self.starts else []
        self.stop_ids = set(stop_ids)

    def _next(self) -> set[int] | None:
        """After the first token: the tokens that continue the run; None when the answer is free
        (off a run, or at its unit's last word)."""
        if not self.live or any(j in self.ends for j in self.live):
            return None
        return {self.ids[j + 1] for j in self.live if j + 1 <= self.unit_end[j]}

    def candidates(self, logp, greedy: bool, pointer=None) -> list[int]:
        """`WordConstraint.candidates` within the tokens this rule allows. At the first step the
        model's own choice stands when it is an abstention start, a stop, or a token it does not
        point at in a unit; else the answer starts where that unit starts. `pointer` is the
        decoder's (source positions, copy attention) of this step."""

        def words() -> list[int]:  # the word constraint's choice, computed only where it is used
            return self.words.candidates(logp, greedy) if self.words is not None else [int(np.argmax(logp))]

        if self.live is None:
            free = words()
            if self.prior_weight and free and free[0] not in self.free_starts | self.stop_ids and pointer is not None:
                self._start = self._weighed_unit(pointer)
            else:
                self._start = self._pointed_unit(free[0], pointer) if free else None
            if self._start is not None and (self.words is None or self.words.allows(self.ids[self._start])):
                return [self.ids[self._start]]
            self._start = None
            return free[:1]
        nxt = self._next()
        if nxt is None and not (self._last in self.cite_open and self.copied):
            return words()
        logp = np.asarray(logp.cpu() if hasattr(logp, "cpu") else logp)
        if nxt is None:  # a citation, not a "[" of a line: it names a passage the run was copied from
            numbers = [self.cite_numbers[p] for p in self.copied if p in self.cite_numbers]
            order = sorted(numbers, key=lambda i: (-logp[i], i))
            return order[:1] if greedy else order
        order = sorted(nxt, key=lambda i: (-logp[i], i))
        allowed = [i for i in order if self.words is None or self.words.allows(i)]
        return allowed[:1] if greedy else allowed

    def _pointed_unit(self, token: int, pointer) -> int | None:
        """The start of the unit holding the source position of `token` that the copy attention
        weighs most; None when the token is an abstention start or a stop, or no such position
        is in a unit."""
        if token in self.free_starts or token in self.stop_ids or pointer is None:
            return None
        src, attn = (np.asarray(x.cpu() if hasattr(x, "cpu") else x) for x in pointer)
        ids = np.asarray(self.ids)[src]
        at = np.flatnonzero(ids == token)
        if not len(at):
            return None
        j = int(src[at[np.argmax(attn[at])]])
        return self.unit_start.get(j)

    def _weighed_unit(self, pointer) -> int | None:
        """The start of the unit with the most copy attention summed over its tokens, times the
        scorer's probability to the `prior_weight` (a product of the two experts: the model
        knows note structure, the scorer what the encoder sees of each line)."""
        src, attn = (np.asarray(x.cpu() if hasattr(x, "cpu") else x, dtype=np.float64) for x in pointer)
        at = np.zeros(len(self.ids) + 1)
        np.add.at(at, src.astype(np.int64), attn)
        cum = np.concatenate([[0.0], np.cumsum(at)])
        best, start = -np.inf, None
        for first_word, a, b, logp in self.choices:
            score = np.log(max(cum[b + 1] - cum[a], 1e-12)) + self.prior_weight * logp
            if score > best and (self.words is None or self.words.allows(self.ids[first_word])):
                best, start = score, first_word
        return start

    def push(self, token: int) -> None:
        if self.words is not None:
            self.words.push(token)
        self._last = token
        if self.live is None:
            self.live = [self._start] if self._start is not None and self.ids[self._start] == token else []
        else:
            self.live = [j + 1 for j in self.live if j + 1 <= self.unit_end[j] and self.ids[j + 1] == token]
        self.copied.update(self.offsets[j][0] for j in self.live if self.offsets[j][0])
