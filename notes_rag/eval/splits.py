"""The one split rule of a QA set used both to fit constants and to test them (dev2).

A constant fitted on a set's questions says nothing about how it does on them, so a set that
serves both jobs is cut once, here: its items sorted by id, the first half (rounded down) is for
fitting, the rest is the test. Nothing else decides which half an item is in, so a fit script and
`benchmarks/eval_all.py` cannot disagree. Sorting by id rather than taking file order keeps the
halves fixed when the file is reordered.

    fit, test = halves(load_items("eval_sets/dev2/qa.jsonl"))
"""

from __future__ import annotations

from notes_rag.eval.qa_file import EvalItem


def halves(items: list[EvalItem]) -> tuple[list[EvalItem], list[EvalItem]]:
    """(fit half, test half) of `items`: sorted by id, the first len // 2 and the rest."""
    ordered = sorted(items, key=lambda item: item.id)
    cut = len(ordered) // 2
    return ordered[:cut], ordered[cut:]
