"""The QA checker (notes_rag.eval.qa_check) on small sets in tmp dirs, and on the committed dev2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from notes_rag.errors import NotesRagError
from notes_rag.eval.qa_check import check_qa, check_qa_file, copied_run
from notes_rag.eval.qa_file import parse_item

ROOT = Path(__file__).resolve().parents[1]
DEV2 = ROOT / "eval_sets" / "dev2"


def _cli_main():
    # scripts/ is not a package: load the script by path, as `python scripts/check_qa.py` runs it.
    spec = importlib.util.spec_from_file_location("check_qa_script", ROOT / "scripts" / "check_qa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


NOTE_A = "# Tokenizacja\n\nTokenizator dzieli tekst na **tokeny**, czyli fragmenty o zmiennej liczbie znaków.\n"
NOTE_B = "# Sampling\n\nThe degree of randomness can be tuned using a model parameter called temperature.\n"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text(NOTE_A, encoding="utf-8")
    (folder / "b.md").write_text(NOTE_B, encoding="utf-8")
    return folder


def _item(**fields):
    obj = {"id": "t1", "lang": "en", "question": "Which setting controls how random sampling is?"}
    obj.update(must=[["temperatur"]], evidence="a model parameter called temperature")
    obj.update(fields)
    return parse_item(obj, line=1)


def test_accepts_a_good_item(notes):
    assert check_qa([_item()], notes) == []


def test_evidence_matches_as_folded_words(notes):
    # Case, diacritics, markdown and punctuation do not matter, as in the eval matcher.
    item = _item(question="Co robi tokenizator?", must=[["fragment"]], evidence="TOKENY, czyli fragmenty")
    assert check_qa([item], notes) == []


def test_rejects_evidence_not_found(notes):
    problems = check_qa([_item(must=[["param"]], evidence="a model parameter called top-p")], notes)
    assert [p.message for p in problems] == ['evidence not found in any note: "a model parameter called top-p"']
    assert (problems[0].item, problems[0].line) == ("t1", 1)


def test_rejects_evidence_in_two_files(notes):
    (notes / "copy.txt").write_text(NOTE_B.upper(), encoding="utf-8")
    messages = [p.message for p in check_qa([_item()], notes)]
    assert len(messages) == 1 and "found in 2 notes (b.md, copy.txt)" in messages[0]


def test_rejects_a_group_without_alternative_in_its_evidence(notes):
    item = _item(must=[["temperatur"], ["top-p", "nucleus"]])
    messages = [p.message for p in check_qa([item], notes)]
    assert messages == ["must group 2 ['top-p', 'nucleus'] has no alternative inside the evidence"]


def test_rejects_a_question_copying_its_evidence(notes):
    item = _item(question="Can the degree of randomness be tuned using a model parameter?", evidence=NOTE_B[12:])
    messages = [p.message for p in check_qa([item], notes)]
    assert messages == ['question copies the evidence: "be tuned using a model parameter"']


def test_copy_rule_counts_six_words_or_the_whole_short_evidence():
    evidence = "one two three four five six seven"
    assert copied_run("x one two three four five y", evidence) is None
    assert copied_run("x two three four five six seven y", evidence) == "two three four five six seven"
    assert copied_run("what is called temperature here", "called temperature") == "called temperature"


def test_every_turn_is_checked_for_copying(notes):
    item = parse_item(
        {
            "id": "m1",
            "lang": "en",
            "turns": ["What can be tuned using a model parameter called temperature?", "Why?"],
            "must": [["temperatur"]],
            "evidence": "a model parameter called temperature",
        }
    )
    messages = [p.message for p in check_qa([item], notes)]
    assert messages == ['question copies the evidence: "a model parameter called temperature"']


def test_kind_must_fit_answerability(notes):
    unanswerable = parse_item({"id": "x1", "lang": "en", "question": "Who won?", "answerable": False})
    problems = check_qa([_item(), unanswerable], notes, kinds={"t1": "in-domain", "x1": "cross"})
    assert [(p.item, p.message.split(" (")[0]) for p in problems] == [
        ("t1", 'kind "in-domain" on an answerable item'),
        ("x1", 'kind "cross" on an unanswerable item'),
    ]


def _write_qa(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_file_check_counts_and_cli_exit_codes(tmp_path, notes, capsys):
    good = {"id": "t1", "lang": "pl", "kind": "cross", "question": "Który parametr steruje losowością?"}
    good.update(must=[["temperatur"]], evidence="a model parameter called temperature")
    off = {"id": "x1", "lang": "en", "kind": "off-topic", "question": "Who won the cup?", "answerable": False}
    qa = _write_qa(tmp_path / "qa.jsonl", [good, off])
    problems, counts = check_qa_file(qa, notes)
    assert problems == []
    assert counts == {
        "items": 2,
        "answerable": 1,
        "unanswerable": 1,
        "multi-turn": 0,
        "cross": 1,
        "off-topic": 1,
        "lang pl": 1,
        "lang en": 1,
    }
    cli_main = _cli_main()
    assert cli_main([str(qa), str(notes)]) == 0
    bad = _write_qa(tmp_path / "bad.jsonl", [dict(good, evidence="not in the notes at all")])
    assert cli_main([str(bad), str(notes)]) == 1
    assert "evidence not found" in capsys.readouterr().out


def test_format_errors_come_from_the_qa_file_loader(tmp_path, notes):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "t1", "lang": "en", "question": "Q?"}\n', encoding="utf-8")
    with pytest.raises(NotesRagError, match=r"qa.jsonl:1: .*must"):
        check_qa_file(qa, notes)


def test_committed_dev2_passes_the_checker():
    problems, counts = check_qa_file(DEV2 / "qa.jsonl", DEV2 / "notes")
    assert [str(p) for p in problems] == []
    assert counts["items"] >= 60
    assert counts.get("cross", 0) >= 10
    assert counts["multi-turn"] >= 4
    assert counts["unanswerable"] >= 12
    assert counts.get("in-domain", 0) >= 8
    notes = sorted(p.name for p in (DEV2 / "notes").iterdir())
    assert len(notes) >= 10
    assert {n[:3] for n in notes} == {"pl_", "en_"}
