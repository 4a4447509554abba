"""Generator items from notes_qa: questions over student-style notes, read as the chat reads them.

`../shared/data/notes_qa/*.jsonl` (its README): notes in three styles (slides, bullets, prose) with
questions whose answers are lines of the note (`evidence_lines`), heading-echo, follow-up and
in-domain unanswerable ones among them. Whole notes are held out (`note_split`, by a hash of the
note id), never single questions: a note's questions share its lines. `test` notes are the
benchmark (never trained on, nothing fitted on them); `val` notes choose the checkpoint and fit the
abstention bias; `train` notes are trained on.

Items are built through the product's own path: the split's notes are written as files and indexed
by `notes-rag index`'s library call (index/build.py), each question is retrieved with the one
before it (`Retriever.search_conversation`, as the chat does), and the model input is
chat/turn_input.py's `turn_input` over the top passages (markup cleaned, relevance codes from the
retrieval encoder). The target is the record's answer, cited by the number of the read passage
holding its evidence lines, or the abstention sentence when the question is unanswerable. When
retrieval leaves the evidence out of the passages read, the evidence passage takes the last read
place (retrieval's miss is not what the generator learns from); beyond the top `SEARCH_K`, the
question is left out.

Each question can give several items (`variants`): the first reads what retrieval put first, as
the chat does; the others read the evidence passage with other retrieved passages of the top
`SEARCH_K` in another order (what the model learns is where the answer stands in a note, never
which place in the list the evidence takes; 172 training notes are otherwise learned by heart in
two passes, issue 29).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from notes_rag.chat.answer import Source, sources_of
from notes_rag.chat.format import ABSTAIN, SYSTEM_PROMPT
from notes_rag.chat.turn_input import read_passages, turn_input
from notes_rag.lang import detect_lang
from notes_rag.model.reader import READ_PASSAGES
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.generator_data import GeneratorItem, answer_forms, answer_room, answer_tokens, copyable

# Shares of the notes by id hash: test ~18% (~40 of 224 notes), val ~8%, train the rest.
SPLITS = (("test", 0.18), ("val", 0.26), ("train", 1.01))
SEARCH_K = 10  # how deep the evidence passage is looked for
_CITE = re.compile(r"\[1\]")


def note_split(note_id: str) -> str:
    """ "test", "val" or "train": a fixed hash of the note's id."""
    h = hashlib.sha256(note_id.encode()).digest()[0] / 256
    return next(name for name, upto in SPLITS if h < upto)


def load_records(folder: Path) -> list[dict]:
    """Every notes_qa record of the folder's .jsonl files, in file order."""
    out = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def split_records(records: list[dict], split: str) -> list[dict]:
    return [r for r in records if note_split(r["id"]) == split]


def note_file(rec: dict) -> str:
    return f"{rec['id']}.md"


def write_notes(records: list[dict], folder: Path) -> None:
    """Each record's note as `folder/<id>.md`, as a student would keep it."""
    folder.mkdir(parents=True, exist_ok=True)
    for rec in records:
        (folder / note_file(rec)).write_text(rec["note"], encoding="utf-8")


@dataclass
class NotesQuestion:
    """One question as the chat meets it: its retrieval, what the model reads, the gold."""

    rec: dict
    qa: dict
    previous: tuple[str, ...]  # the question asked before it in the conversation
    sources: list[Source]  # retrieved, best first (the gold moved into the read ones for training)
    gold: int | None  # 1-based read passage holding the evidence; None when unanswerable
    retrieved_gold: int | None  # where retrieval itself put the evidence passage (1-based, None: not in top k)


def _holds_evidence(s: Source, file: str, lines: list[int]) -> bool:
    return s.file == file and s.line_start <= lines[1] and s.line_end >= lines[0]


def questions(records: list[dict], retriever, move_gold: bool = True) -> Iterator[NotesQuestion]:
    """The records' questions in conversation order, each retrieved with the one before it (a
    follow-up with the question it follows). `move_gold`: put a missed evidence passage in the last
    read place (training); else leave retrieval as it is (the benchmark)."""
    for rec in records:
        asked: list[str] = []
        for qa in rec["qa"]:
            fu = qa.get("follow_up_of")
            previous = (rec["qa"][fu]["q"],) if fu is not None else tuple(asked[-1:])
            res = retriever.search_conversation([*previous, qa["q"]], k=SEARCH_K)
            sources = sources_of(res.hits)
            asked.append(qa["q"])
            gold = found = None
            if qa.get("answerable") and qa.get("evidence_lines"):
                at = [i for i, s in enumerate(sources) if _holds_evidence(s, note_file(rec), qa["evidence_lines"])]
                if not at:
                    if move_gold:
                        continue
                else:
                    found = at[0] + 1
                    gold = found
                    if found > READ_PASSAGES and move_gold:
                        sources.insert(READ_PASSAGES - 1, sources.pop(at[0]))
                        gold = READ_PASSAGES
                    elif found > READ_PASSAGES:
                        gold = None
            elif qa.get("answerable"):
                continue
            yield NotesQuestion(rec, qa, previous, sources, gold, found)


def variant(nq: NotesQuestion, rng: np.random.Generator) -> NotesQuestion:
    """`nq` reading other retrieved passages: the evidence passage at a random read place among
    READ_PASSAGES − 1 others drawn from the retrieved ones (kept in retrieval order); an
    unanswerable question reads any READ_PASSAGES of them."""
    n = len(nq.sources)
    if n <= 1:
        return nq
    if nq.gold is None:
        pick = sorted(rng.choice(n, min(n, READ_PASSAGES), replace=False).tolist())
        return replace(nq, sources=[nq.sources[i] for i in pick])
    g = nq.gold - 1
    others = sorted(rng.choice([i for i in range(n) if i != g], min(n - 1, READ_PASSAGES - 1), replace=False).tolist())
    at = int(rng.integers(0, len(others) + 1))
    order = [*others[:at], g, *others[at:]]
    return replace(nq, sources=[nq.sources[i] for i in order], gold=at + 1)


def target_answer(nq: NotesQuestion) -> str:
    """The gold answer cited by its read passage's number, or the abstention in the question's
    language."""
    if nq.gold is None:
        return ABSTAIN[nq.qa.get("lang") or detect_lang(nq.qa["q"])]
    return _CITE.sub(f"[{nq.gold}]", nq.qa["answer"])


def items(
    records: list[dict], retriever, tok: Tokenizer, max_len: int, variants: int = 1, on_item=None
) -> tuple[list[GeneratorItem], dict]:
    """Generator items of `records` over `retriever`'s index of their notes, `variants` a question
    (the first as retrieved, the others from `variant`), and counts."""
    rng = np.random.default_rng(0)
    counts = {"questions": 0, "moved_gold": 0, "not_copyable": 0, "unanswerable": 0}
    out: list[GeneratorItem] = []
    for nq in questions(records, retriever):
        counts["questions"] += 1
        counts["moved_gold"] += nq.gold is not None and nq.gold != nq.retrieved_gold
        for v in range(variants):
            item = _item(nq if v == 0 else variant(nq, rng), retriever, tok, max_len, counts)
            if item is not None:
                out.append(item)
                if on_item:
                    on_item()
    counts["items"] = len(out)
    return out, counts


def _item(nq: NotesQuestion, retriever, tok: Tokenizer, max_len: int, counts: dict) -> GeneratorItem | None:
    """The model input of `nq` as the chat builds it, with its target; None (counted) when the
    target cannot be copied from what fits."""
    answer = target_answer(nq)
    forms = answer_forms(tok, answer, nq.gold is not None)
    passages = read_passages(nq.sources)
    lang = detect_lang(nq.rec["qa"][0]["q"])  # the conversation's first question (chat/assistant.py)
    max_input = max_len - answer_room(forms)
    inp = turn_input(tok, retriever, nq.qa["q"], nq.previous, passages, SYSTEM_PROMPT[lang], max_input)
    if nq.gold is not None:
        kept = " ".join(text for _, text in passages[: inp.passages])
        if nq.gold > inp.passages or not copyable(answer, kept + " " + nq.qa["q"]):
            counts["not_copyable"] += 1
            return None
    else:
        counts["unanswerable"] += 1
    target = answer_tokens(forms, inp.ids) + [tok.special("end")]
    source = f"notes_qa:{nq.qa.get('kind', '')}"
    return GeneratorItem.of(inp, target, nq.gold is not None, nq.qa.get("lang", ""), source)


def build(
    folder: Path, work: Path, tok: Tokenizer, max_len: int, split: str, encoder=None, variants: int = 1
) -> tuple[list[GeneratorItem], dict]:
    """Items of notes_qa's `split` notes ("train", "val"), `variants` a question, indexed in
    `work` with `encoder` (default: the index's own, e5 with the release's aligned layers)."""
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder
    from notes_rag.index.search import Retriever

    records = split_records(load_records(folder), split)
    notes = work / "notes"
    write_notes(records, notes)
    encoder = encoder if encoder is not None else load_encoder()
    update_index(notes, work / "index", encoder)
    retriever = Retriever(work / "index", encoder=encoder)
    try:  # the units' vectors come stored with the hits (index/store.py unit_vectors), as in the chat
        return items(records, retriever, tok, max_len, variants)
    finally:
        retriever.close()
