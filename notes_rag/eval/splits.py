"""The one split rule of a QA set used both to fit constants and to test them (dev2).

A constant fitted on a set's questions says nothing about how it does on them, so a set that
serves both jobs is cut once, here: its items sorted by id, the first half (rounded down) is for
fitting, the rest is the test. Nothing else decides which half an item is in, so a fit script and
`benchmarks/eval_all.py` cannot disagree. Sorting by id rather than taking file order keeps the
halves fixed when the file is reordered.

On dev2 (ids e01-e99, then the unanswerable ex01-ex15) the fit half is 57 answerable items over
8 of the 12 notes; the test half holds the other 42 answerable items (4 of its notes unseen by
the fit) and all 15 unanswerable ones. So a fit on dev2 bounds false abstention only, and the
test half judges abstention and retrieval on questions and notes the fit never saw.

    fit, test = halves(load_items("eval_sets/dev2/qa.jsonl"))
"""

from __future__ import annotations

from notes_rag.eval.qa_file import EvalItem


def halves(items: list[EvalItem]) -> tuple[list[EvalItem], list[EvalItem]]:
    """(fit half, test half) of `items`: sorted by id, the first len // 2 and the rest."""
    ordered = sorted(items, key=lambda item: item.id)
    cut = len(ordered) // 2
    return ordered[:cut], ordered[cut:]
