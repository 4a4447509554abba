"""The QA file of `notes-rag eval`: JSON Lines, one item a line::

    {"id": "d01", "lang": "pl", "question": "...", "must": [["audio", "obraz"]], "evidence": "..."}
    {"id": "dm1", "lang": "en", "turns": ["first question", "follow-up"], "must": ..., "evidence": ...}
    {"id": "dx1", "lang": "en", "question": "...", "answerable": false}

`must` is a list of key-fact groups; an answer passes a group when it contains any of the group's
alternatives. `evidence` occurs verbatim in one of the notes. With `turns`, the last turn is the
one scored. Items are answerable unless `"answerable": false`. The format is documented for
users in docs/EVAL.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.text import words


@dataclass
class EvalItem:
    id: str
    lang: str
    turns: list[str]  # the user's questions, oldest first; the last one is scored
    must: list[list[str]]  # key-fact groups of alternatives (empty for unanswerable items)
    evidence: str | None  # None for unanswerable items
    answerable: bool = True
    line: int = 0  # 1-based line in the QA file, for messages

    @property
    def multi_turn(self) -> bool:
        return len(self.turns) > 1


def _str_list(value, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings")
    return value


def _turns(obj: dict) -> list[str]:
    if ("question" in obj) == ("turns" in obj):
        raise ValueError('give exactly one of "question" or "turns"')
    if "turns" in obj:
        return _str_list(obj["turns"], '"turns"')
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        raise ValueError('"question" must be a non-empty string')
    return [obj["question"]]


def parse_item(obj, line: int = 0) -> EvalItem:
    """One QA record → `EvalItem`; raises ValueError with what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    for key in ("id", "lang"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise ValueError(f'"{key}" must be a non-empty string')
    turns = _turns(obj)
    answerable = obj.get("answerable", True)
    if not isinstance(answerable, bool):
        raise ValueError('"answerable" must be true or false')
    must, evidence = [], None
    if answerable:
        if not isinstance(obj.get("must"), list) or not obj["must"]:
            raise ValueError('"must" must be a non-empty list of groups (lists of strings)')
        must = [_str_list(g, f'"must" group {i + 1}') for i, g in enumerate(obj["must"])]
        evidence = obj.get("evidence")
        if not isinstance(evidence, str) or not words(evidence):
            raise ValueError('"evidence" must be a string with at least one word')
    return EvalItem(obj["id"], obj["lang"], turns, must, evidence, answerable, line)


def load_items(path: Path) -> list[EvalItem]:
    """Read a QA JSONL file; a malformed line raises `NotesRagError` naming file and line."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotesRagError(f"QA file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise NotesRagError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    items, seen = [], {}
    for n, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = parse_item(json.loads(text), n)
        except json.JSONDecodeError as e:
            raise NotesRagError(f"{path}:{n}: invalid JSON ({e.msg}, column {e.colno})") from None
        except ValueError as e:
            raise NotesRagError(f"{path}:{n}: {e}") from None
        if item.id in seen:
            raise NotesRagError(f'{path}:{n}: duplicate id "{item.id}" (first on line {seen[item.id]})')
        seen[item.id] = n
        items.append(item)
    if not items:
        raise NotesRagError(f"{path}: no QA items")
    return items
