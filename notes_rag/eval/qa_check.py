"""Checks that a QA file is a usable eval set for its notes, before any system is scored on it.

`check_qa(items, notes_dir, kinds)` returns the problems of a QA set (parsed by
`qa_file.load_items`) against the folder of notes it was written for; `check_qa_file(path,
notes_dir)` loads the file and adds the counts to print. The rules, on the matcher's own folding
and word rules (`notes_rag.text`, `notes_rag.eval.matching`):

- **evidence**: its words occur contiguously in exactly one note file (as `scan_notes` reads the
  folder). In none, no chunk can ever be a hit; in two, retrieval is scored against one file
  while the other holds the same fact.
- **key facts**: every `must` group has an alternative that the evidence itself passes (folded
  substring, as answers are matched). Otherwise an answer quoting the evidence fails the item.
- **no copying**: no question turn shares a run of `COPY_RUN` consecutive words with its evidence
  (or the whole evidence, when it is shorter). A question that quotes the evidence tests string
  matching, not retrieval of a paraphrase.
- **kinds**: `"kind"` is `"cross"` on answerable items, `"in-domain"` or `"off-topic"` on
  unanswerable ones (the counts report them).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from notes_rag.eval.matching import evidence_coverage, group_passes
from notes_rag.eval.qa_file import EvalItem, load_items
from notes_rag.index.notes import scan_notes
from notes_rag.text import words

# Six words in a row is a copied clause; five-word runs occur in honest paraphrases of a name
# ("retrieval augmented generation for knowledge") often enough to be noise.
COPY_RUN = 6
ANSWERABLE_KINDS = ("cross",)
UNANSWERABLE_KINDS = ("in-domain", "off-topic")


@dataclass(frozen=True)
class Problem:
    item: str  # the item's id
    line: int  # 1-based line in the QA file
    message: str

    def __str__(self) -> str:
        return f"line {self.line} [{self.item}]: {self.message}"


def _has_run(hay: list[str], run: list[str]) -> bool:
    n = len(run)
    return any(hay[i : i + n] == run for i in range(len(hay) - n + 1))


def copied_run(question: str, evidence: str, run: int = COPY_RUN) -> str | None:
    """The first run of `run` evidence words (all of them, if fewer) that the question repeats."""
    ev, q = words(evidence), words(question)
    n = min(run, len(ev))
    for i in range(len(ev) - n + 1):
        if _has_run(q, ev[i : i + n]):
            return " ".join(ev[i : i + n])
    return None


def evidence_homes(evidence: str, notes: dict[str, str]) -> list[str]:
    """The note files (paths) whose words hold all of the evidence's words contiguously."""
    return [path for path, text in notes.items() if evidence_coverage(evidence, text) >= 1.0]


def _item_problems(item: EvalItem, kind: str | None, notes: dict[str, str]) -> list[str]:
    allowed = ANSWERABLE_KINDS if item.answerable else UNANSWERABLE_KINDS
    out = []
    if kind is not None and kind not in allowed:
        sort = "answerable" if item.answerable else "unanswerable"
        out.append(f'kind "{kind}" on an {sort} item (allowed: {", ".join(allowed)})')
    if not item.answerable:
        return out
    homes = evidence_homes(item.evidence, notes)
    if not homes:
        out.append(f'evidence not found in any note: "{item.evidence}"')
    elif len(homes) > 1:
        out.append(f'evidence found in {len(homes)} notes ({", ".join(homes)}): "{item.evidence}"')
    for n, group in enumerate(item.must, start=1):
        if not group_passes(item.evidence, group):
            out.append(f"must group {n} {group} has no alternative inside the evidence")
    for turn in item.turns:
        run = copied_run(turn, item.evidence)
        if run:
            out.append(f'question copies the evidence: "{run}"')
    return out


def check_qa(items: list[EvalItem], notes_dir: Path, kinds: dict[str, str | None] | None = None) -> list[Problem]:
    """Problems of the QA items against the notes in `notes_dir` (`kinds`: id → "kind" field)."""
    notes = {n.path: n.text for n in scan_notes(Path(notes_dir))[0]}
    kinds = kinds or {}
    return [Problem(it.id, it.line, msg) for it in items for msg in _item_problems(it, kinds.get(it.id), notes)]


def qa_counts(items: list[EvalItem], kinds: dict[str, str | None]) -> dict[str, int]:
    """How many items of each sort: answerable, unanswerable, multi-turn, per kind and per language."""
    counts = Counter(items=len(items))
    for it in items:
        counts["answerable" if it.answerable else "unanswerable"] += 1
        counts["multi-turn"] += it.multi_turn
        kind = kinds.get(it.id)
        if kind:
            counts[kind] += 1
        counts[f"lang {it.lang}"] += 1
    return dict(counts)


def read_kinds(path: Path) -> dict[str, str | None]:
    """The optional "kind" field of each item (`EvalItem` does not carry it); call after
    `load_items` has validated the file, so every non-blank line is a JSON object with an id."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    objs = (json.loads(line) for line in lines if line.strip())
    return {obj["id"]: obj.get("kind") for obj in objs}


def check_qa_file(path: Path, notes_dir: Path) -> tuple[list[Problem], dict[str, int]]:
    """Load a QA file (format errors raise `NotesRagError`), check it, and count its items."""
    items = load_items(path)
    kinds = read_kinds(path)
    return check_qa(items, notes_dir, kinds), qa_counts(items, kinds)
