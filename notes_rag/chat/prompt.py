"""Prompt fitting: system prompt + passages + recent turns + the question within the context.

`fit_prompt` gives up as little as possible when everything does not fit `context - reserve`
tokens. Order of sacrifices: the oldest exchanges (down to `keep_last_exchanges`), then the
passages' tails, then the remaining exchanges, then the lowest-ranked passages. Trimming cuts the
longest passages to a common length, the top passage (the likeliest to hold the answer) to
`top_weight` times that; cutting lower-ranked ones to nothing first would lose the answer
whenever it is not at rank 1, cutting all alike loses it when rank 1 is long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from notes_rag.chat.answer import PromptPlan
from notes_rag.chat.format import Conversation, Passage, Turn, render, render_prompt
from notes_rag.errors import NotesRagError
from notes_rag.model.tokenizer import Tokenizer


def _exchanges(turns: Sequence[Turn]) -> list[list[Turn]]:
    """Group turns into exchanges, each starting at a user turn (dropped as a unit)."""
    out: list[list[Turn]] = []
    for t in turns:
        if t.role == "user" or not out:
            out.append([])
        out[-1].append(t)
    return out


def _cut(tok: Tokenizer, text: str, n: int) -> str:
    """The text of the first `n` tokens of `text`, without a split character at the end."""
    return b"".join(tok.token_bytes(i) for i in tok.encode(text)[:n]).decode("utf-8", errors="ignore")


@dataclass
class _Sizes:
    """Token counts of the parts of a prompt, measured once."""

    budget: int  # context minus the answer's reserve
    base: int  # <|bos|> + system prompt
    heads: list[int]  # each passage's opener and header
    bodies: list[int]  # each passage's text
    exchanges: list[int]  # each earlier exchange
    question: int  # <|user|> question <|end|><|assistant|>

    @classmethod
    def measure(
        cls,
        tok: Tokenizer,
        system: str,
        passages: Sequence[Passage],
        exchanges: list[list[Turn]],
        question: str,
        budget: int,
    ) -> _Sizes:
        empty = len(render(Conversation(""), tok)[0])
        return cls(
            budget=budget,
            base=len(render(Conversation(system), tok)[0]),
            heads=[len(render(Conversation("", [p]), tok, 0)[0]) - empty for p in passages],
            bodies=[len(tok.encode(p.text)) for p in passages],
            exchanges=[sum(2 + len(tok.encode(t.content)) for t in ex) for ex in exchanges],
            question=2 + len(tok.encode(question)) + 1,
        )

    def history(self, n_ex: int) -> int:
        """Tokens of the last `n_ex` exchanges."""
        return sum(self.exchanges[len(self.exchanges) - n_ex :]) if n_ex else 0

    def trimmed(self, n_ex: int, n_p: int, min_passage_tokens: int, top_weight: float) -> list[int] | None:
        """Body lengths of the first n_p passages cut to fit, or None if they cannot: the longest
        are cut first, to a common cap (the top passage's is `top_weight` times larger), none below
        `min_passage_tokens`."""
        avail = self.budget - self.base - self.history(n_ex) - sum(self.heads[:n_p]) - self.question
        weights = [top_weight] + [1.0] * (n_p - 1)
        bodies = self.bodies[:n_p]

        def lengths(cap: int) -> list[int]:
            return [min(b, max(min_passage_tokens, int(w * cap))) for b, w in zip(bodies, weights)]

        lo, hi = 0, max(bodies, default=0)
        if sum(lengths(lo)) > avail:
            return None
        while lo < hi:  # the largest cap that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if sum(lengths(mid)) <= avail else (lo, mid - 1)
        return lengths(lo)


def _choose(
    sizes: _Sizes, keep_last_exchanges: int, min_passage_tokens: int, top_weight: float
) -> tuple[int, int, list[int]]:
    """(exchanges kept, passages kept, their body lengths): the first plan that fits, in the
    order of sacrifices; raises when even the question alone does not fit."""
    n_all, p_all = len(sizes.exchanges), len(sizes.bodies)
    keep = min(keep_last_exchanges, n_all)
    plans = [(e, p_all, False) for e in range(n_all, keep - 1, -1)]
    plans += [(e, p_all, True) for e in range(keep, -1, -1)]
    plans += [(0, p, True) for p in range(p_all - 1, -1, -1)]
    for n_ex, n_p, may_trim in plans:
        lengths = sizes.trimmed(n_ex, n_p, min_passage_tokens, top_weight)
        if lengths is not None and (may_trim or lengths == sizes.bodies[:n_p]):
            return n_ex, n_p, lengths
    raise NotesRagError(
        f"the question is too long: it needs {sizes.base + sizes.question} prompt tokens and the model has room "
        f"for {sizes.budget}; ask a shorter question"
    )


def _render_cut(
    tok: Tokenizer,
    system: str,
    passages: Sequence[Passage],
    sizes: _Sizes,
    lengths: list[int],
    turns: list[Turn],
    question: str,
) -> tuple[list[int], list[Passage]]:
    """Prompt ids with each passage cut to its length, and the passages as cut."""
    n_p, bodies, budget = len(lengths), sizes.bodies, sizes.budget
    kept = list(passages[:n_p])
    while True:
        for i, n in enumerate(lengths):
            if n < bodies[i]:
                kept[i] = Passage(passages[i].label, _cut(tok, passages[i].text, n))
        ids = render_prompt(Conversation(system, kept, [*turns, Turn("user", question)]), tok)
        over = len(ids) - budget
        # Re-encoding a cut text can take a token more than the cut; shave the lowest cut passage.
        i = next((i for i in reversed(range(n_p)) if lengths[i] - over >= 1), None)
        if over <= 0 or i is None:
            break
        lengths[i] -= over
    if over > 0:
        raise AssertionError(f"prompt of {len(ids)} tokens over the budget {budget}")
    return ids, kept


def fit_prompt(
    tok: Tokenizer,
    system: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    question: str,
    context: int,
    reserve: int,
    keep_last_exchanges: int = 1,
    min_passage_tokens: int = 48,
    top_weight: float = 2.0,
) -> PromptPlan:
    """The prompt that fits `context - reserve` tokens, giving up as little as possible (see the
    module docstring for the order of sacrifices). Raises when the question alone is too long."""
    exchanges = _exchanges(history)
    sizes = _Sizes.measure(tok, system, passages, exchanges, question, context - reserve)
    n_ex, n_p, lengths = _choose(sizes, keep_last_exchanges, min_passage_tokens, top_weight)
    n_all = len(exchanges)
    kept_turns = [t for ex in exchanges[n_all - n_ex :] for t in ex] if n_ex else []
    ids, kept = _render_cut(tok, system, passages, sizes, lengths, kept_turns, question)
    history_tokens = sizes.history(n_ex)
    return PromptPlan(
        ids=ids,
        system=system,
        passages=n_p,
        dropped_passages=len(passages) - n_p,
        passage_tokens=[len(tok.encode(p.text)) for p in kept],
        passage_tokens_full=sizes.bodies[:n_p],
        turns=kept_turns,
        dropped_turns=sum(len(ex) for ex in exchanges[: n_all - n_ex]),
        tokens={
            "system": sizes.base,
            "passages": len(ids) - sizes.base - history_tokens - sizes.question,
            "history": history_tokens,
            "question": sizes.question,
            "total": len(ids),
            "budget": sizes.budget,
            "context": context,
        },
    )
