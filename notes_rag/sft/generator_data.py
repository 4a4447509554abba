"""Generator training items: the finetuning conversations as our GPT answers them, copy head on.

Each assistant turn of a grounded conversation (`notes-rag sft-data` output) becomes one item:
the reader's input (the system prompt, the user's previous question, the question, then the
passages; match flags on passage words that match the question; model/reader.py `encode`), then
the answer tokens and
`<|end|>`. The loss is the copy head's mixture loss on the answer tokens only (model/copy_head.py),
copying from the prompt's sources (model/reader.py `copy_sources`).

The kit's passages are Wikipedia-style paragraphs; a student's notes are lines, bullets and slide
fragments under headings. `as_notes` re-renders each passage in one of those styles (seeded, per
passage), keeping every sentence's text, so the gold answer stays a copy of the passage.

An answer whose words the (fitted) prompt does not hold is left out: training the model to write
words it cannot copy is training it to make them up.
"""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from notes_rag.chat.format import Conversation
from notes_rag.chat.turn_input import turn_input
from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_bytes
from notes_rag.model.reader import READ_PASSAGES, ReaderInput, copy_sources, encode
from notes_rag.model.tokenizer import SPECIAL_TOKENS, Tokenizer
from notes_rag.text import clean_markup, sentence_spans, words
from notes_rag.train.batching import LengthBatches

_CITATION = re.compile(r"\[(\d+)\]")
# Note styles and their shares: prose as retrieved, one sentence a line, bullets, and bullets
# under a heading line that repeats the passage's last heading (slides repeat their title).
STYLES = (("prose", 0.25), ("lines", 0.35), ("bullets", 0.25), ("slide", 0.15))
MIN_COPYABLE = 0.85  # share of an answer's words (citation aside) that must occur in the prompt


def as_notes(text: str, label: str, rng: random.Random) -> str:
    """`text` rendered as notes in a random style; every sentence's own text is kept."""
    style = rng.choices([s for s, _ in STYLES], [w for _, w in STYLES])[0]
    sentences = [text[a:b].strip() for a, b in sentence_spans(text)]
    sentences = [s for s in sentences if s]
    if style == "prose" or len(sentences) < 2:
        return text
    if style == "lines":
        return "\n".join(sentences)
    bullet = rng.choice(("- ", "* ", "• "))
    body = "\n".join(bullet + s for s in sentences)
    if style == "slide":
        title = label.split(" › ")[-1].strip()
        return f"## {title}\n{body}" if title else body
    return body


@dataclass
class GeneratorItem:
    ids: np.ndarray  # int32: prompt, answer, <|end|>
    match: np.ndarray  # int16 match-flag bits and relevance codes (model/constants.py; 0 on the answer)
    prompt_len: int  # ids[:prompt_len] is the prompt (it ends with <|assistant|>)
    answerable: bool
    lang: str
    source: str

    @classmethod
    def of(cls, inp: ReaderInput, target: list[int], answerable: bool, lang: str, source: str) -> GeneratorItem:
        """The item of a model input (model/reader.py `encode`) and its target ids (ending with
        `<|end|>`), which carry no match flags or codes."""
        return cls(
            np.asarray(inp.ids + target, dtype=np.int32),
            np.asarray(inp.match + [0] * len(target), dtype=np.int16),
            len(inp.ids),
            answerable,
            lang,
            source,
        )


@dataclass
class ReaderQuestion:
    """One question of a conversation record, with what the model needs to answer it."""

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


def answer_forms(tok: Tokenizer, answer: str, answerable: bool = True) -> tuple[list[int], ...]:
    """The answer's token ids as it starts, and with a leading space. An abstention keeps the one
    form the chat's no-answer score reads (chat/writer.py `abstention_starts`)."""
    plain = tok.encode(answer)
    return (plain, tok.encode(" " + answer)) if answerable else (plain,)


def answer_room(forms: tuple[list[int], ...]) -> int:
    """Tokens the target may take, `<|end|>` included, whichever form `answer_tokens` picks."""
    return max(map(len, forms)) + 1


def answer_tokens(forms: tuple[list[int], ...], prompt_ids: list[int]) -> list[int]:
    """The form of the answer (`answer_forms`) whose first two tokens the copy head can copy: the
    answer's first word, tokenized at the start of the answer, is often not the token it is in
    the passage, where it follows a space (" problemy" there, "pro"+"ble"+"my" here). Measured on
    the 2026-12-07 training items: the first two tokens occur in the prompt for 0.32 of notes_qa
    answers as written, 0.71 with the spaced form where that one occurs (kit: 0.50 → 0.91). The
    chat strips the leading space (chat/writer.py)."""
    for ids in forms:
        head = ids[:2]
        if head and any(prompt_ids[j : j + len(head)] == head for j in range(len(prompt_ids) - len(head) + 1)):
            return ids
    return forms[0]


def copyable(answer: str, prompt_text: str) -> bool:
    """Most of the answer's words occur in the prompt (citation numbers aside)."""
    ans = [w for w in words(answer) if not w.isdigit()]
    if not ans:
        return True
    have = set(words(prompt_text))
    return sum(w in have for w in ans) >= MIN_COPYABLE * len(ans)


def read_passages(rec: dict, n_passages: int) -> tuple[list[int], dict[int, int]]:
    """The passages an item keeps (0-based, in order): every gold one, then the first others, up
    to `n_passages` when the golds allow; and the renumbering old -> new passage number."""
    n = len(rec["passages"])
    golds = {g["passage"] - 1 for g in rec.get("golds") or [] if g.get("passage")}
    if rec.get("gold_passage"):
        golds.add(rec["gold_passage"] - 1)
    others = [i for i in range(n) if i not in golds][: max(0, n_passages - len(golds))]
    keep = sorted(golds | set(others))
    return keep, {i + 1: j + 1 for j, i in enumerate(keep)}


def note_passages(
    rec: dict, questions: list[ReaderQuestion], seed: int, n_passages: int = READ_PASSAGES
) -> tuple[list[tuple[str, str]], dict[int, int]]:
    """The (label, text) passages a record's items read, rendered as notes (seeded per record),
    and the renumbering old -> new passage number (`read_passages`)."""
    keep, numbers = read_passages(rec, n_passages)
    rng = random.Random(f"{seed}:{rec.get('id', '')}:{questions[0].question}")
    return [(label, as_notes(text, label, rng)) for label, text in (questions[0].passages[i] for i in keep)], numbers


def _renumber(answer: str, numbers: dict[int, int]) -> str:
    return _CITATION.sub(lambda m: f"[{numbers.get(int(m.group(1)), int(m.group(1)))}]", answer)


def items_of_record(
    rec: dict, tok: Tokenizer, max_len: int, seed: int = 0, n_passages: int = READ_PASSAGES, units=None
) -> list[GeneratorItem]:
    """The generator items of one conversation record (none for passage-free tasks). With `units`
    (chat/turn_input.py `UnitEncoder`), the input carries the retrieval encoder's relevance codes
    as the chat's does."""
    questions = questions_of_record(rec)
    if not questions:
        return []
    answers = [t.content for t in Conversation.from_dict(rec).turns if t.role == "assistant"]
    passages, numbers = note_passages(rec, questions, seed, n_passages)
    if units is not None:  # read as the chat reads (chat/turn_input.py)
        passages = [(label, clean_markup(text)) for label, text in passages]
    questions = [replace(q, passage=numbers[q.passage] if q.passage else None) for q in questions]
    answers = [_renumber(a, numbers) for a in answers]
    system = rec.get("system") or None
    end = tok.special("end")
    out = []
    for q, answer in zip(questions, answers):
        answerable = q.passage is not None
        forms = answer_forms(tok, answer, answerable)
        max_input = max_len - answer_room(forms)
        try:
            if units is not None:  # read as the chat reads: relevance codes (chat/turn_input.py)
                inp = turn_input(tok, units, q.question, q.history, passages, system, max_input)
            else:
                inp = encode(tok, q.question, passages, q.history, max_len=max_input, system=system)
        except ValueError:
            continue
        if answerable:
            kept = " ".join(text for _, text in passages[: inp.passages])
            if q.passage > inp.passages or not copyable(answer, kept + " " + q.question):
                continue
        out.append(GeneratorItem.of(inp, answer_tokens(forms, inp.ids) + [end], answerable, q.lang, q.source))
    return out


def build_items(
    records: list[dict], tok: Tokenizer, max_len: int, seed: int = 0, n_passages: int = READ_PASSAGES, units=None
) -> list[GeneratorItem]:
    return [it for rec in records for it in items_of_record(rec, tok, max_len, seed, n_passages, units)]


def save_items(path: Path, items: list[GeneratorItem]) -> None:
    """Items as flat arrays (no pickle), written atomically."""
    lengths = np.asarray([len(it.ids) for it in items], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(
        buf,
        ids=np.concatenate([it.ids for it in items]).astype(np.int32),
        match=np.concatenate([it.match for it in items]).astype(np.int16),
        lengths=lengths,
        prompt_len=np.asarray([it.prompt_len for it in items], dtype=np.int64),
        answerable=np.asarray([it.answerable for it in items], dtype=bool),
        meta=np.frombuffer(json.dumps([[it.lang, it.source] for it in items]).encode(), dtype=np.uint8),
    )
    atomic_write_bytes(path, buf.getvalue())


def load_items(path: Path) -> list[GeneratorItem]:
    with np.load(path, allow_pickle=False) as z:
        ends = np.cumsum(z["lengths"])
        meta = json.loads(z["meta"].tobytes())
        ids, match = z["ids"], z["match"]
        return [
            GeneratorItem(ids[e - n : e], match[e - n : e], int(p), bool(a), lang, src)
            for e, n, p, a, (lang, src) in zip(ends, z["lengths"], z["prompt_len"], z["answerable"], meta)
        ]


def special_ids(tok: Tokenizer) -> torch.Tensor:
    return torch.tensor([tok.special(s) for s in SPECIAL_TOKENS])


def batch_of(items: list[GeneratorItem], specials: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(x, targets): padded ids, match bits and copy-source mask; targets are the next token on
    the answer positions (the `<|assistant|>` token predicts the first answer token) and -1
    elsewhere."""
    B, T = len(items), max(len(it.ids) for it in items)
    ids = torch.zeros(B, T, dtype=torch.long)
    match = torch.zeros(B, T, dtype=torch.long)
    source = torch.zeros(B, T, dtype=torch.bool)
    targets = torch.full((B, T), -1, dtype=torch.long)
    special = set(specials.tolist())
    for b, it in enumerate(items):
        n, p = len(it.ids), it.prompt_len
        ids[b, :n] = torch.from_numpy(it.ids.astype(np.int64))
        match[b, :n] = torch.from_numpy(it.match.astype(np.int64))
        source[b, :p] = torch.tensor(copy_sources(it.ids[:p].tolist(), special))
        targets[b, p - 1 : n - 1] = ids[b, p:n]
    return {"ids": ids, "match": match, "copy_mask": source}, targets


class GeneratorBatches(LengthBatches):
    """Seeded, resumable micro-batches of generator items of similar length (a BatchSource)."""

    def __init__(self, items: list[GeneratorItem], specials: torch.Tensor, micro_tokens: int, seed: int = 0):
        if not items:
            raise NotesRagError("no generator items: check the finetuning data")
        self.items, self.specials = items, specials
        super().__init__([len(it.ids) for it in items], micro_tokens, seed)

    def next_batch(self):
        return batch_of([self.items[i] for i in self.next_indices()], self.specials)
