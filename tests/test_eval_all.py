"""All eval sets in one run (`eval.all_sets`, `benchmarks/eval_all.py`) on tiny sets in a temp dir,
and the split rule of a set used for fitting and testing (`eval.splits`)."""

from __future__ import annotations

import json

from tiny_encoder import build_tiny_encoder

from notes_rag.eval.all_sets import EvalSet, columns, markdown, run_all, table_rows
from notes_rag.eval.qa_file import EvalItem
from notes_rag.eval.splits import halves
from notes_rag.index.encoder import load_encoder

NOTES_A = {
    "neuron.md": "# Neuron\n\nW 1943 McCulloch i Pitts proponują matematyczny model neuronu.\n",
    "rope.md": "# Pozycje\n\nRoPE obraca wektory zapytań i kluczy o kąt zależny od pozycji.\n",
}
QA_A = [
    {"id": "a1", "lang": "pl", "question": "Kiedy zaproponowano model neuronu?", "must": [["1943"]],
     "evidence": "W 1943 McCulloch i Pitts"},
    {"id": "a2", "lang": "pl", "question": "Co obraca RoPE?", "must": [["wektory"]],
     "evidence": "RoPE obraca wektory zapytań"},
    {"id": "a3", "lang": "en", "question": "What is the capital of Australia?", "answerable": False},
]  # fmt: skip
NOTES_B = {"tok.md": "# Tokeny\n\nTokenizacja dzieli tekst na tokeny.\n\nSłownik przypisuje im identyfikatory.\n"}
QA_B = [
    {"id": "b2", "lang": "pl", "question": "Co robi tokenizacja?", "must": [["tokeny"]],
     "evidence": "Tokenizacja dzieli tekst na tokeny"},
    {"id": "b1", "lang": "pl", "question": "Co przypisuje słownik?", "must": [["identyfikator"]],
     "evidence": "Słownik przypisuje im identyfikatory"},
    {"id": "b3", "lang": "en", "question": "How do I bake bread?", "answerable": False},
    {"id": "b4", "lang": "pl", "question": "Czym jest tokenizacja?", "must": [["dzieli"]],
     "evidence": "Tokenizacja dzieli tekst"},
]  # fmt: skip


def _set(root, name, notes, qa, split=False):
    folder = root / name / "notes"
    folder.mkdir(parents=True)
    for file, text in notes.items():
        (folder / file).write_text(text, encoding="utf-8")
    path = root / name / "qa.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in qa), encoding="utf-8")
    return EvalSet(name, path, folder, split=split)


def test_halves_by_id_order():
    items = [EvalItem(i, "pl", ["q"], [["x"]], "e") for i in ("d3", "d1", "d4", "d2", "d5")]
    fit, test = halves(items)
    assert [i.id for i in fit] == ["d1", "d2"] and [i.id for i in test] == ["d3", "d4", "d5"]
    assert halves(list(reversed(items))) == (fit, test)  # file order does not matter


def test_run_all_on_tiny_sets(tmp_path):
    data = tmp_path / "data"
    sets = [
        _set(data, "one", NOTES_A, QA_A),
        _set(data, "two", NOTES_B, QA_B, split=True),
        EvalSet("gone", data / "nope.jsonl", data / "nope"),
    ]
    enc_path = build_tiny_encoder(tmp_path / "encoder")
    encoder = load_encoder(enc_path)
    seen = []
    result = run_all(
        sets,
        tmp_path / "work",
        answers=False,
        encoder=encoder,
        encoder_path=str(enc_path),
        on_set=lambda s, n: seen.append((s.name, n)),
    )
    assert seen == [("one", 3), ("two", 4)]
    assert result["sets"]["gone"] == {"skipped": f"no QA file {data / 'nope.jsonl'}"}
    assert (tmp_path / "work" / "one" / "index").is_dir() and (tmp_path / "work" / "two" / "index").is_dir()
    assert list(columns(result)) == ["one", "two", "two fit half", "two test half"]
    cols = columns(result)
    assert (cols["one"]["n"], cols["one"]["n_answerable"]) == (3, 2)
    # the halves by id: b1, b2 fit; b3, b4 test
    assert (cols["two fit half"]["n"], cols["two test half"]["n"]) == (2, 2)
    assert cols["two test half"]["n_answerable"] == 1
    hit5 = cols["two"]["retrieval"]["hit@5"]
    assert hit5 == 1.0 and cols["two"]["retrieval"]["hit@5_counts"] == [3, 3]  # one note file: always found
    assert cols["one"]["answer"] is None and cols["one"]["latency"]["retrieval_ms_p50"] > 0
    rows = dict(table_rows(result))
    assert rows["items (answerable)"] == ["3 (2)", "4 (3)", "2 (2)", "2 (1)"]
    assert rows["hit@5"][1] == "1.00 [0.44–1.00]"
    assert "baseline key facts" in rows and "key facts" not in rows  # no answers: baseline only
    md = markdown(result)
    assert md.splitlines()[0] == "| | one | two | two fit half | two test half |"
    assert "- gone: skipped (no QA file" in md
    json.dumps(result)  # plain data

    again = run_all(sets[:1], tmp_path / "work", answers=False, encoder=encoder, encoder_path=str(enc_path))
    assert columns(again)["one"]["retrieval"] == cols["one"]["retrieval"]  # the index is reused as it is
