"""Reader training items from the finetuning conversations (`notes-rag sft-data` output).

Every assistant turn of a grounded conversation becomes one reader item: its question, the
user's earlier questions, the conversation's passages (already shaped like our retrieval: 3-5
chunks, distractors drawn with lexical search, some gold passages removed to make
unanswerables) and labels for the heads (model/reader.py):

- no answer (`gold passage` null)           -> unit -1
- a span located in the gold passage        -> its sentence, start/end tokens, kind "span"
- a yes/no answer ("yes"/"no", BoolQ)       -> unit -2 (somewhere), kind "yes"/"no"
- an answer not found in the passage (ROPES options, instructions) -> not a reader item.

Items are stored as compact arrays (`ReaderItem`) and served by `ReaderBatches` as padded
micro-batches of similar length, seeded and resumable like the finetuning batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from notes_rag.chat.format import Conversation
from notes_rag.errors import NotesRagError
from notes_rag.model.reader import KINDS, ReaderInput, Unit, collate, encode
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.train.batching import LengthBatches


@dataclass
class ReaderItem:
    ids: np.ndarray  # int32
    match: np.ndarray  # int8 flag bits
    unit_first: np.ndarray  # int32 token ranges of the sentences
    unit_last: np.ndarray
    unit: int  # gold sentence, -1 no answer, -2 answerable (sentence unknown)
    kind: int  # index into KINDS, -1 when not labelled
    start: int  # span token positions, -1 when none
    end: int
    lang: str
    source: str
    answer: str  # the gold answer text ("" when unanswerable)
    question: str


def _locate(text: str, answer: str) -> int:
    at = text.find(answer)
    return at if at >= 0 else text.lower().find(answer.lower())


def _span_tokens(inp: ReaderInput, passage: int, start: int, end: int) -> tuple[int, int, int] | None:
    """(sentence index, first token, last token) of the character span in passage `passage`."""
    for u, unit in enumerate(inp.units):
        if unit.passage == passage and unit.start <= start < unit.end:
            toks = [
                t for t in range(unit.first, unit.last + 1) if inp.offsets[t][1] < end and inp.offsets[t][2] > start
            ]
            if not toks:
                return None
            return u, toks[0], toks[-1]
    return None  # the sentence was cut to fit the context


@dataclass
class ReaderQuestion:
    """One question of a conversation record, with what the reader needs to answer it."""

    question: str
    history: tuple[str, ...]  # earlier questions of the conversation, oldest first
    passages: list[tuple[str, str]]  # (label, text), numbered from 1
    passage: int | None  # gold passage number, None when unanswerable
    answer: str  # gold answer span, "yes"/"no", or "" when unanswerable
    lang: str
    source: str


def questions_of_record(rec: dict, history_turns: int = 1) -> list[ReaderQuestion]:
    """The questions of one conversation record (none for passage-free tasks)."""
    conv = Conversation.from_dict(rec)
    if not conv.passages or rec.get("task", "qa") != "qa":
        return []
    passages = [(p.label, p.text) for p in conv.passages]
    golds = rec.get("golds") or [{"passage": rec.get("gold_passage"), "answer": rec.get("gold_answer", "")}]
    questions = [t.content for t in conv.turns if t.role == "user"]
    return [
        ReaderQuestion(
            q,
            tuple(questions[max(0, i - history_turns) : i]),
            passages,
            g.get("passage"),
            (g.get("answer") or "") if g.get("passage") else "",
            rec.get("lang", ""),
            rec.get("source", ""),
        )
        for i, (q, g) in enumerate(zip(questions, golds))
    ]


def labels(inp: ReaderInput, q: ReaderQuestion) -> tuple[int, int, int, int] | None:
    """(unit, kind, start, end) for the heads, or None when the answer cannot be pointed at
    (not in its passage, or cut off to fit the context)."""
    if q.passage is None:
        return -1, -1, -1, -1
    if q.answer.lower() in ("yes", "no"):
        return -2, KINDS.index(q.answer.lower()), -1, -1
    at = _locate(q.passages[q.passage - 1][1], q.answer) if q.answer else -1
    if q.passage > inp.passages or at < 0:
        return None
    found = _span_tokens(inp, q.passage, at, at + len(q.answer))
    return None if found is None else (found[0], 0, found[1], found[2])


def items_of_record(rec: dict, tok: Tokenizer, max_len: int, history_turns: int = 1) -> list[ReaderItem]:
    """The reader items of one conversation record (empty for passage-free tasks)."""
    out = []
    for q in questions_of_record(rec, history_turns):
        try:
            inp = encode(tok, q.question, q.passages, q.history, max_len=max_len)
        except ValueError:
            continue
        lab = labels(inp, q)
        if lab is None:
            continue
        out.append(
            ReaderItem(
                np.asarray(inp.ids, dtype=np.int32),
                np.asarray(inp.match, dtype=np.int8),
                np.asarray([u.first for u in inp.units], dtype=np.int32),
                np.asarray([u.last for u in inp.units], dtype=np.int32),
                *lab,
                q.lang,
                q.source,
                q.answer,
                q.question,
            )
        )
    return out


def build_items(records: list[dict], tok: Tokenizer, max_len: int) -> list[ReaderItem]:
    return [it for rec in records for it in items_of_record(rec, tok, max_len)]


def batch_of(items: list[ReaderItem], lm_frac: float = 0.25, rng: np.random.Generator | None = None):
    """(x, y) tensors of a list of items; `lm_frac` of the input positions get LM targets."""
    x = collate([_as_input(it) for it in items])
    B, T = x["ids"].shape
    y = {
        "unit": torch.tensor([it.unit for it in items]),
        "kind": torch.tensor([it.kind for it in items]),
        "start": torch.tensor([it.start for it in items]),
        "end": torch.tensor([it.end for it in items]),
    }
    if lm_frac:
        rng = rng or np.random.default_rng(0)
        lm = torch.full((B, T), -1, dtype=torch.long)
        for b, it in enumerate(items):
            n = len(it.ids) - 1
            pick = np.flatnonzero(rng.random(n) < lm_frac)
            lm[b, pick] = torch.from_numpy(it.ids[pick + 1].astype(np.int64))
        y["lm"] = lm
    return x, y


def _as_input(it: ReaderItem) -> ReaderInput:
    units = [Unit(0, 0, 0, int(a), int(b)) for a, b in zip(it.unit_first, it.unit_last)]
    return ReaderInput(it.ids.tolist(), it.match.tolist(), units, [], 0)


class ReaderBatches(LengthBatches):
    """Seeded, resumable micro-batches of reader items of similar length (a BatchSource)."""

    def __init__(self, items: list[ReaderItem], micro_tokens: int, seed: int = 0, lm_frac: float = 0.25):
        if not items:
            raise NotesRagError("no reader items: check the finetuning data")
        self.items, self.lm_frac = items, lm_frac
        super().__init__([len(it.ids) for it in items], micro_tokens, seed)

    def next_batch(self):
        idx = self.next_indices()
        rng = np.random.default_rng([self.seed, self.epoch, self.cursor])  # the LM targets resume exactly too
        return batch_of([self.items[i] for i in idx], self.lm_frac, rng)
