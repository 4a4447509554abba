"""`pretrain --resume --time-budget`: the budget is the run's total, and one already used up is
said in one line (train/pretrain.py `spent_budget`)."""

from __future__ import annotations

import json

from notes_rag.train.pretrain import spent_budget


def _run(tmp_path, elapsed: float):
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "train_state.json").write_text(json.dumps({"step": 40, "elapsed": elapsed}))
    return tmp_path


def test_a_budget_already_used_is_said_with_what_would_continue(tmp_path):
    note = spent_budget(_run(tmp_path, 3900.0), 1800.0)  # trained 65 min, asked for 30 min
    assert note.startswith("nothing to train") and "65.0 min" in note and "30.0 min" in note
    assert "--time-budget 95m for 30 min more" in note and "\n" not in note


def test_a_budget_with_time_left_or_no_run_says_nothing(tmp_path):
    assert spent_budget(_run(tmp_path, 600.0), 1800.0) is None
    assert spent_budget(tmp_path, None) is None
    assert spent_budget(tmp_path / "elsewhere", 60.0) is None
