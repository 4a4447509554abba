"""`notes-rag promote`: a run's release replaces models/ only when it beats it on dev key facts
without abstaining worse; tiny fake eval reports and checkpoints in temp dirs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from notes_rag.cli.main import app
from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.speedrun.promote import BEGIN, END, promote


def fake_report(key_facts: float, abstention: float, ids=("d1", "d2", "d3")) -> dict:
    answer = {
        "key_fact_recall": key_facts,
        "abstention_accuracy": abstention,
        "false_abstention": 0.1,
        "citation_precision": 0.8,
        "answered_by_model": 0.9,
    }
    return {
        "meta": {"qa_file": "eval/dev.jsonl", "date": "2026-11-27T12:00:00+00:00"},
        "overall": {"answer": answer, "latency": {"total_s_p50": 0.03}},
        "items": [{"id": i} for i in ids],
    }


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture()
def setup(tmp_path, tiny_model, tok):
    models, run = tmp_path / "models", tmp_path / "run"
    write_checkpoint(models, tiny_model, tok, meta={"stage": "generator", "step": 7})
    _write(models / "eval.json", fake_report(0.35, 0.83))
    (models / "README.md").write_text("# Model card\n\nHand-written text.\n")
    (models / "pretrain_loss.png").write_bytes(b"old curve")
    pretrain = {
        "stage": "pretrain",
        "step": 40,
        "tokens": 163840,
        "train_seconds": 30.0,
        "val_loss": 5.7,
        "val_bpb": 3.3,
    }
    meta = {"stage": "generator", "step": 20, "tokens": 80000, "train_seconds": 12.0, "val_loss": 1.0}
    meta["base_meta"] = {"stage": "finetune", "step": 20, "tokens": 80000, "val_loss": 1.2, "base_meta": pretrain}
    write_checkpoint(run / "release", tiny_model, tok, meta={**meta, "speedrun": "smoke"}, shards=("float16", 110_000))
    (run / "pretrain").mkdir()
    (run / "pretrain" / "loss.png").write_bytes(b"new curve")
    return models, run


def test_promotes_a_better_run(setup):
    models, run = setup
    _write(run / "eval.json", fake_report(0.40, 0.83))
    verdict = promote(run, models)
    assert verdict.promote and "0.40 vs 0.35" in verdict.reason
    assert not (models / "model.safetensors").exists()  # the old single file went with the old release
    from notes_rag.model.manifest import check_folder

    assert check_folder(models) == []  # promote wrote the new weights' sha256 (issue 30)
    model, _, config = load_model(models)
    assert config["meta"]["speedrun"] == "smoke" and model.config.n_layer == 2
    assert json.loads((models / "eval.json").read_text())["overall"]["answer"]["key_fact_recall"] == 0.40
    assert (models / "pretrain_loss.png").read_bytes() == b"new curve"
    readme = (models / "README.md").read_text()
    assert readme.startswith("# Model card\n\nHand-written text.")
    assert "| key-fact recall | 0.35 | 0.40 |" in readme and "| pretrain | 40 | 0.2M | 0.5 min |" in readme
    assert "| answers by the model | 0.90 | 0.90 |" in readme and "| generator | 20 |" in readme
    assert not [p for p in models.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    _write(run / "eval.json", fake_report(0.45, 0.90))  # promoted again: the block is replaced, not added
    promote(run, models)
    readme = (models / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1 and "| key-fact recall | 0.40 | 0.45 |" in readme


@pytest.mark.parametrize(
    "key_facts, abstention, ids, message",
    [
        (0.35, 0.90, ("d1", "d2", "d3"), "not better than the release"),
        (0.50, 0.80, ("d1", "d2", "d3"), "abstains worse than the release"),
        (0.50, 0.90, ("d1", "d2"), "different QA items"),
    ],
)
def test_refuses_a_run_that_is_not_better(setup, key_facts, abstention, ids, message):
    models, run = setup
    _write(run / "eval.json", fake_report(key_facts, abstention, ids))
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    with pytest.raises(NotesRagError, match=message):
        promote(run, models)
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before


def test_forced_promotion_says_why(setup):
    models, run = setup
    _write(run / "eval.json", fake_report(0.35, 0.90))  # not better: refused unless forced
    verdict = promote(run, models, force="the release cannot run on this code")
    assert verdict.promote and "forced (the release cannot run on this code)" in verdict.reason
    assert "not better than the release" in verdict.reason
    assert "the release cannot run on this code" in (models / "README.md").read_text(encoding="utf-8")


def test_cli_promote_and_its_errors(setup):
    models, run = setup
    runner = CliRunner()
    res = runner.invoke(app, ["promote", str(run), "--models", str(models)])
    assert res.exit_code != 0 and "has no eval.json" in str(res.exception)
    _write(run / "eval.json", fake_report(0.40, 0.83))
    (models / "eval.json").unlink()
    res = runner.invoke(app, ["promote", str(run), "--models", str(models)])
    assert res.exit_code != 0 and "notes-rag eval DEV" in str(res.exception)
    res = runner.invoke(app, ["promote", str(run), "--models", str(models.parent / "fresh")])
    assert res.exit_code == 0, res.output
    assert "promoted" in res.output and load_model(models.parent / "fresh")[2]["meta"]["speedrun"] == "smoke"
