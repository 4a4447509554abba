"""One `Example` -> one training conversation, made to look like our retrieval.

1. each anchor paragraph is trimmed to a chunk of 100-150 words around its answer(s);
2. with probability `drop_gold_rate` an answerable example loses its gold paragraph and every
   question answered from it becomes an abstention (distractors of the same article/document are
   then excluded, and no distractor may contain a gold span);
3. distractors fill the passages up to k (3-5): BM25 neighbours of the questions among the
   other paragraphs of the same source and split (`Pool`), some picked at random instead;
4. passages are shuffled and numbered; answers are rendered in the documented style with the
   gold passage's citation; conversations over `max_tokens` lose distractors or are dropped.

The order of the random draws is part of the data: the same seed gives the same conversations.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from notes_rag.chat.format import ABSTAIN, INSTRUCT_PROMPT, SYSTEM_PROMPT, Conversation, Passage, Turn, render
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.clauses import answer_clause, trim_around
from notes_rag.sft.config import BuildConfig
from notes_rag.sft.kit import Anchor, Example
from notes_rag.text import best_sentence_span


class Pool:
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


# A question placed in the conversation: [question, anchor index | None, start in the trimmed
# anchor, answer span].
_Placed = list


def _trim_anchors(ex: Example, max_words: int) -> tuple[list[_Placed], list[str]]:
    """Each anchor trimmed around the answers it holds, and each question with its answer's
    place in the trimmed text (questions whose answer was cut off are left out), in order."""
    qas: list[_Placed] = []
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
    return qas, trimmed


def _distractor_ok(ex: Example, qas: list[_Placed], dropped: set[int]) -> Callable[[Anchor], bool]:
    """Whether a paragraph may be a distractor: not one of the example's own, and unable to answer
    a question labelled unanswerable or to contain a gold answer."""
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

    return ok


def _pick_distractors(
    ok: Callable[[Anchor], bool],
    wanted: int,
    queue: list[Anchor],
    all_anchors: list[Anchor],
    rng: random.Random,
    random_rate: float,
) -> list[Anchor]:
    """Up to `wanted` distractors: the pool's BM25 candidates in order, a random paragraph instead
    with probability `random_rate`."""
    picked: list[Anchor] = []
    tries = 0
    while len(picked) < wanted and tries < 40:
        tries += 1
        if queue and rng.random() >= random_rate:
            a = queue.pop(0)
        elif all_anchors:
            a = rng.choice(all_anchors)
        else:
            break
        if ok(a) and all(a.text != p.text for p in picked):
            picked.append(a)
    return picked


def _answer_turns(
    qas: list[_Placed], dropped: set[int], trimmed: list[str], number: dict[int, int], lang: str
) -> tuple[list[Turn], list[tuple[int | None, str]]]:
    """The conversation's turns, and (gold passage number, gold answer) per assistant turn."""
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
    return turns, gold_info


def assemble(
    ex: Example,
    pool: Pool | None,
    cands: list[int],
    all_anchors: list[Anchor],
    rng: random.Random,
    cfg: BuildConfig,
    tok: Tokenizer,
) -> dict | None:
    """The training record of one example (None when no answer is left or it is too long)."""
    lang = ex.lang
    if ex.task != "qa" or not ex.anchors:
        q = ex.qas[0]
        conv = Conversation(system=INSTRUCT_PROMPT[lang], turns=[Turn("user", q.question), Turn("assistant", q.answer)])
        return _record(conv, ex, [(None, q.span)], tok, cfg, [])
    qas, trimmed = _trim_anchors(ex, rng.randint(*cfg.chunk_words))
    if not qas:
        return None
    # maybe remove a gold paragraph: its questions become unanswerable
    dropped: set[int] = set()
    golds = sorted({x[1] for x in qas if x[1] is not None})
    if ex.droppable and golds and rng.random() < cfg.drop_gold_rate:
        dropped.add(rng.choice(golds))
    k = rng.randint(*cfg.k_range)
    kept = [i for i in range(len(ex.anchors)) if i not in dropped]
    queue = [pool.anchors[i] for i in cands] if pool else []
    ok = _distractor_ok(ex, qas, dropped)
    picked = _pick_distractors(ok, k - len(kept), queue, all_anchors, rng, cfg.random_distractor_rate)
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
    turns, gold_info = _answer_turns(qas, dropped, trimmed, number, lang)
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
