"""`--resume --time-budget`: the budget is the run's total, and one already used up is said in
one line by the training loop (train/loop.py `spent_budget`), for every stage that resumes."""

from __future__ import annotations

from pathlib import Path

from notes_rag.train.loop import spent_budget


def test_a_budget_already_used_is_said_with_what_would_continue():
    note = spent_budget(Path("runs/x"), 3900.0, 1800.0)  # trained 65 min, asked for 30 min
    assert note.startswith("nothing to train") and "65.0 min" in note and "30.0 min" in note
    assert "--time-budget 95m for 30 min more" in note and "\n" not in note


def test_a_budget_with_time_left_or_no_budget_says_nothing():
    assert spent_budget(Path("runs/x"), 600.0, 1800.0) is None
    assert spent_budget(Path("runs/x"), 600.0, None) is None
