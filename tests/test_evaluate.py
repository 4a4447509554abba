"""Scoring rules, QA-file loading, the runner and the JSON report of `notes-rag eval`."""

from __future__ import annotations

import json

import pytest

from notes_rag.errors import NotesRagError
from notes_rag.eval.matching import evidence_coverage, first_hit_rank, group_passes, is_hit, score_groups
from notes_rag.eval.qa_file import EvalItem, load_items
from notes_rag.eval.runner import AnswerRecord, Retrieval, RetrievedChunk, run_eval
from notes_rag.eval.summary import report
from notes_rag.text import best_sentence, fold

# ------------------------------------------------------------------ matching rules


def test_fold_strips_polish_diacritics_case_and_spacing():
    assert fold("Zażółć  GĘŚLĄ\njaźń, Łódź") == "zazolc gesla jazn, lodz"


def test_group_passes_case_insensitive_and_diacritics_folded_on_both_sides():
    assert group_passes("Wynik to ROZKŁAD prawdopodobieństwa.", ["rozkład prawdopodobieństwa"])
    assert group_passes("wynik to rozklad prawdopodobienstwa", ["Rozkład Prawdopodobieństwa"])
    assert group_passes("Wynik to rozkład prawdopodobieństwa", ["rozklad prawdopodobienstwa"])
    assert group_passes("Koszt: 5M USD", ["5 mln", "5m"])  # any alternative
    assert not group_passes("Koszt: 50M USD", ["5 mln", "5 m"])
    assert score_groups("absolute and relative", [["absolute"], ["relative"], ["rotary", "rope"]]) == [
        True,
        True,
        False,
    ]


def test_evidence_contained_across_markdown_and_line_breaks():
    chunk = "## Koszty\n\t* **GPT-3** - 5M   USD\n\t* GPT-4 - 50-100M USD"
    assert evidence_coverage("GPT-3 - 5M USD", chunk) == 1.0
    assert (
        evidence_coverage("Nie zachowuje informacji o znaczeniu", "nie zachowuje\ninformacji o znaczeniu słów") == 1.0
    )
    assert evidence_coverage("wyjście: rozkład", "WYJSCIE -> ROZKLAD") == 1.0  # folded words
    assert evidence_coverage("GPT-3 - 5M USD", "GPT-3 - 6M USD") == 0.0


EVIDENCE = "one two three four five six seven eight nine ten"  # 10 words: 60% = 6 words


def test_straddling_evidence_prefix_ending_the_chunk():
    chunk_a = "intro words here\nmore text one two three four five six"
    assert evidence_coverage(EVIDENCE, chunk_a) == 0.6
    assert is_hit(EVIDENCE, chunk_a)
    # five words at the end: 50%, not a hit
    assert not is_hit(EVIDENCE, "intro text one two three four five")


def test_straddling_evidence_suffix_starting_a_line_after_a_heading_path():
    chunk_b = "Notes > Section\nfive six seven eight nine ten and the rest of the chunk"
    assert evidence_coverage(EVIDENCE, chunk_b) == 0.6
    assert is_hit(EVIDENCE, chunk_b)
    assert evidence_coverage(EVIDENCE, "Notes\nfour five six seven eight nine ten rest") == 0.7


def test_partial_runs_elsewhere_do_not_count():
    # a 60% prefix in the middle of a chunk is a coincidence, not a cut by a chunk boundary
    assert evidence_coverage(EVIDENCE, "x one two three four five six y") == 0.0
    # a suffix that does not start a line
    assert evidence_coverage(EVIDENCE, "x five six seven eight nine ten") == 0.0
    # runs of the middle words
    assert evidence_coverage(EVIDENCE, "three four five six seven eight nine") == 0.0


def test_short_evidence_needs_at_least_three_words_to_straddle():
    # 2 of 3 words would be 67%, but two common words are no evidence
    assert evidence_coverage("Embedding vectors shift", "text about embedding vectors") == 0.0
    assert evidence_coverage("A b c d", "x a b c") == 0.75


def test_first_hit_rank_and_depth():
    chunks = ["nothing", "still nothing", "GPT-3 - 5M USD here"]
    assert first_hit_rank("GPT-3 - 5M USD", chunks) == 3
    assert first_hit_rank("GPT-3 - 5M USD", chunks, depth=2) is None


def test_best_sentence_picks_the_sentence_sharing_most_stems():
    chunk = (
        "## Koszty trening GPT-3\nModele mają wiele warstw. Trening GPT-3 kosztował 5M USD. Inne koszty są mniejsze."
    )
    assert best_sentence("Ile kosztował trening GPT-3?", chunk) == "Trening GPT-3 kosztował 5M USD."
    # Polish inflection: "modelu" matches "Modele" through the 5-letter stem
    assert best_sentence("Ile warstw ma modelu?", chunk) == "Modele mają wiele warstw."
    # the heading shares more stems but is a title, not an answer
    assert best_sentence("Koszty trening GPT-3?", chunk) == "Trening GPT-3 kosztował 5M USD."


# ------------------------------------------------------------------ QA file


def _write(tmp_path, lines):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = [
    '{"id":"a","lang":"pl","question":"Ile?","must":[["45"]],"evidence":"45 mld"}',
    "",
    '{"id":"b","lang":"en","turns":["Who?","When?"],"must":[["1943"]],"evidence":"1943 Pitts"}',
    '{"id":"c","lang":"en","question":"Tokyo?","answerable":false}',
]


def test_load_items(tmp_path):
    items = load_items(_write(tmp_path, GOOD))
    assert [i.id for i in items] == ["a", "b", "c"]
    assert items[1].turns == ["Who?", "When?"] and items[1].multi_turn and items[1].line == 3
    assert not items[2].answerable and items[2].must == [] and items[2].evidence is None


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"id":"x","lang":"pl","question":"Q?","must":[["a"]]', "invalid JSON"),
        ('["not", "an", "object"]', "expected a JSON object"),
        ('{"id":"x","lang":"pl","question":"Q?","evidence":"e"}', '"must"'),
        ('{"id":"x","lang":"pl","question":"Q?","must":[[]],"evidence":"e"}', '"must" group 1'),
        ('{"id":"x","lang":"pl","question":"Q?","must":["a"],"evidence":"e"}', '"must" group 1'),
        ('{"id":"x","lang":"pl","question":"Q?","must":[["a"]]}', '"evidence"'),
        ('{"id":"x","lang":"pl","question":"Q?","turns":["Q?"],"must":[["a"]],"evidence":"e"}', "exactly one"),
        ('{"id":"x","lang":"pl","turns":[],"must":[["a"]],"evidence":"e"}', '"turns"'),
        ('{"lang":"pl","question":"Q?","answerable":false}', '"id"'),
        ('{"id":"x","lang":"pl","question":"Q?","answerable":"no"}', '"answerable"'),
        ('{"id":"a","lang":"pl","question":"Q?","answerable":false}', 'duplicate id "a" (first on line 1)'),
    ],
)
def test_malformed_line_error_names_the_line(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD[0], "", bad])
    with pytest.raises(NotesRagError) as e:
        load_items(path)
    assert f"{path}:3:" in str(e.value) and message in str(e.value)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(NotesRagError, match="not found"):
        load_items(tmp_path / "nope.jsonl")
    with pytest.raises(NotesRagError, match="no QA items"):
        load_items(_write(tmp_path, [""]))


# ------------------------------------------------------------------ runner and summaries

NOTES = [
    ("pl.md", "# Modele\nMixtral ma 45 mld parametrów.\nKontekst 32k tokenów."),
    ("en.md", "# History\n1943 Warren McCulloch and Walter Pitts proposed the neuron model."),
]
ITEMS = [
    EvalItem("pl1", "pl", ["Ile parametrów ma Mixtral?"], [["45"]], "45 mld parametrów"),
    EvalItem("en1", "en", ["How many parameters does Mixtral have?"], [["45"], ["billion"]], "45 mld parametrów"),
    EvalItem("mt", "en", ["Who proposed the neuron model?", "In which year?"], [["1943"]], "1943 Warren McCulloch"),
    EvalItem("un1", "en", ["What is the population of Tokyo?"], [], None, answerable=False),
    EvalItem("un2", "pl", ["Jak zrobić sernik?"], [], None, answerable=False),
]
# Per item: ranked chunks (file names into NOTES) and the dense top-1 cosine.
RANKING = {
    "Ile parametrów ma Mixtral?": (["pl.md", "en.md"], 0.90),
    "How many parameters does Mixtral have?": (["en.md", "pl.md"], 0.85),
    "In which year?": (["en.md"], 0.84),
    "What is the population of Tokyo?": (["en.md"], 0.70),
    "Jak zrobić sernik?": (["pl.md"], 0.81),  # over the threshold: the baseline answers
}
ANSWERS = {
    # text, abstained, cited passage numbers
    "Ile parametrów ma Mixtral?": ("Mixtral ma 45 mld parametrów [1].", False, [1]),
    "How many parameters does Mixtral have?": ("It has 45 billion parameters [1][2].", False, [1, 2]),
    "In which year?": ("I couldn't find that in your notes.", True, []),
    "What is the population of Tokyo?": ("I couldn't find that in your notes.", True, []),
    "Jak zrobić sernik?": ("Sernik piecze się godzinę [7].", False, [7]),
}
NOTE_TEXT = dict(NOTES)


def fake_retrieve(turns):
    files, cos = RANKING[turns[-1]]
    return Retrieval([RetrievedChunk(NOTE_TEXT[f], f) for f in files], cos)


def fake_answer(turns):
    files, _ = RANKING[turns[-1]]
    text, abstained, cited = ANSWERS[turns[-1]]
    return AnswerRecord(text, abstained, cited, [NOTE_TEXT[f] for f in files], ttft_s=0.2, total_s=1.0)


def _run(answer_fn=fake_answer):
    return run_eval(
        ITEMS,
        fake_retrieve,
        answer_fn,
        chunks=NOTES,
        file_lang={"pl.md": "pl", "en.md": "en"},
        threshold=0.8,
    )


def test_run_eval_per_item_results():
    res = {r.id: r for r in _run()}
    assert res["pl1"].kind == "same-language" and res["en1"].kind == "cross-lingual"
    assert res["un1"].kind == "unanswerable" and res["mt"].multi_turn
    assert res["pl1"].evidence_files == ["pl.md"]
    assert (res["pl1"].hit_rank, res["en1"].hit_rank, res["mt"].hit_rank) == (1, 2, 1)
    assert res["un1"].hit_rank is None
    # baseline: the best sentence of the top chunk, or abstain under the cosine threshold
    assert res["pl1"].baseline.text == "Mixtral ma 45 mld parametrów." and res["pl1"].baseline.key_facts
    assert res["un1"].baseline.abstained and not res["un2"].baseline.abstained
    # citations: passage 1 of en1 is en.md (no evidence), 2 is pl.md; 7 is out of range
    assert res["en1"].answer.cited_hits == [False, True]
    assert res["en1"].answer.groups == [True, True]
    assert res["un2"].answer.cited_hits == [False]


def test_summary_counts_answers_written_by_the_model():
    def by_model(turns):
        rec = fake_answer(turns)
        rec.answered_by = (
            "retrieval" if rec.abstained else "model" if "?" in turns[-1][:-1] or len(turns) > 1 else "quote"
        )
        return rec

    results = _run(answer_fn=by_model)
    shown = [r for r in results if not r.answer.abstained]
    by = sum(r.answer.answered_by == "model" for r in shown)
    assert 0 < len(shown) < len(results)
    assert report(results)["overall"]["answer"]["answered_by_model"] == by / len(shown)


def test_summary_metrics():
    rep = report(_run())
    o = rep["overall"]
    assert (o["n"], o["n_answerable"]) == (5, 3)
    r = o["retrieval"]
    assert {m: r[m] for m in ("hit@1", "hit@3", "hit@5", "mrr@10")} == {
        "hit@1": 2 / 3, "hit@3": 1.0, "hit@5": 1.0, "mrr@10": (1 + 0.5 + 1) / 3,
    }  # fmt: skip
    # every rate comes with its 95% interval and counts
    assert r["hit@1_counts"] == [2, 3] and r["hit@1_ci"] == pytest.approx([0.2077, 0.9385], abs=1e-3)
    assert r["mrr@10_counts"] == [2.5, 3] and r["mrr@10_ci"][0] < r["mrr@10"] <= r["mrr@10_ci"][1]
    a = o["answer"]
    assert a["key_fact_recall"] == 2 / 3  # mt abstained
    assert a["group_recall"] == 3 / 4
    assert a["abstention_accuracy"] == 0.5  # un1 abstained, un2 answered
    assert a["false_abstention"] == 1 / 3
    # cited passages of answered answerable items: pl1 [1]=hit, en1 [1]=miss, [2]=hit
    assert a["citation_precision"] == 2 / 3 and a["answers_citing"] == 1.0
    b = o["baseline"]
    assert b["abstention_accuracy"] == 0.5 and b["false_abstention"] == 0.0
    assert b["citation_precision"] is None
    assert o["latency"]["ttft_s_p50"] == 0.2 and o["latency"]["total_s_p50"] == 1.0
    assert a["answered_by_model"] is None  # the answer function did not say who answered
    assert a["key_fact_recall_counts"] == [2, 3] and a["abstention_accuracy_counts"] == [1, 2]
    assert a["citation_precision_ci"] == pytest.approx([0.2077, 0.9385], abs=1e-3)
    assert b["citation_precision_ci"] is None and b["citation_precision_counts"] == [0, 0]
    by = rep["breakdowns"]
    assert set(by["language"]) == {"pl", "en"}
    assert set(by["kind"]) == {"same-language", "cross-lingual", "unanswerable"}
    assert by["turns"]["multi-turn"]["n"] == 1 and by["turns"]["multi-turn"]["answer"]["key_fact_recall"] == 0.0
    assert by["kind"]["cross-lingual"]["retrieval"]["hit@1"] == 0.0
    json.dumps(rep)  # plain data all the way down


def test_without_answers_only_retrieval_and_baseline():
    rep = report(_run(answer_fn=None))
    assert rep["overall"]["answer"] is None
    assert all(item["answer"] is None for item in rep["items"])
    assert rep["overall"]["latency"]["ttft_s_p50"] is None
    # pl1 and mt: the top chunk holds the fact; en1's top chunk is the wrong note
    assert rep["overall"]["baseline"]["key_fact_recall"] == 2 / 3


# ------------------------------------------------------------------ CLI


@pytest.fixture
def fake_backends(monkeypatch):
    from notes_rag.cli import eval as cli_eval

    opened = {}

    def fake_open(index, model, k, mode, answers, overrides=None):
        opened.update(index=index, model=model, k=k, mode=mode, answers=answers)
        return cli_eval.Backends(
            retrieve_fn=fake_retrieve,
            answer_fn=fake_answer if answers else None,
            chunks=NOTES,
            file_lang={"pl.md": "pl", "en.md": "en"},
            threshold=0.8,
            meta={"index": "fake-index", "model": "fake-model" if answers else None},
        )

    monkeypatch.setattr(cli_eval, "open_backends", fake_open)
    return opened


def _qa_file(tmp_path):
    lines = []
    for it in ITEMS:
        obj = {"id": it.id, "lang": it.lang}
        obj.update({"turns": it.turns} if it.multi_turn else {"question": it.turns[0]})
        obj.update({"must": it.must, "evidence": it.evidence} if it.answerable else {"answerable": False})
        lines.append(json.dumps(obj, ensure_ascii=False))
    return _write(tmp_path, lines)


def test_cli_eval_writes_json_report(tmp_path, fake_backends):
    from typer.testing import CliRunner

    from notes_rag.cli.main import app

    out = tmp_path / "out" / "report.json"
    res = CliRunner().invoke(app, ["eval", str(_qa_file(tmp_path)), "--json", str(out), "--k", "4"])
    assert res.exit_code == 0, res.output
    for text in ("hit@5", "baseline", "GPT", "cross-lingual", "multi-turn", "first token", "[0.21–0.94]"):
        assert text in res.output
    assert fake_backends == {"index": None, "model": None, "k": 4, "mode": "hybrid", "answers": True}
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert set(rep) == {"meta", "overall", "breakdowns", "items"}
    assert rep["meta"]["k"] == 4 and rep["meta"]["answers"] and rep["meta"]["model"] == "fake-model"
    assert set(rep["breakdowns"]) == {"language", "kind", "turns"}
    assert set(rep["overall"]) == {"n", "n_answerable", "retrieval", "baseline", "answer", "latency"}
    item = rep["items"][0]
    assert set(item) == {
        "id", "lang", "kind", "multi_turn", "answerable", "turns", "evidence_files", "retrieved_files",
        "hit_rank", "retrieval_ms", "top_cosine", "baseline", "answer",
    }  # fmt: skip
    assert set(item["answer"]) == {
        "text", "abstained", "groups", "cited", "cited_hits", "ttft_s", "total_s", "answered_by", "key_facts",
    }  # fmt: skip
    assert [i["id"] for i in rep["items"]] == [it.id for it in ITEMS]
    assert list(out.parent.iterdir()) == [out]  # atomic write leaves no temporary file


def test_cli_eval_no_answers_and_errors(tmp_path, fake_backends):
    from typer.testing import CliRunner

    from notes_rag.cli.main import app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", str(_qa_file(tmp_path)), "--no-answers", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "GPT" not in res.output and fake_backends["answers"] is False
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["overall"]["answer"] is None and rep["meta"]["answers"] is False

    bad = _write(tmp_path, [GOOD[0], "{oops"])
    res = CliRunner().invoke(app, ["eval", str(bad)])
    assert isinstance(res.exception, NotesRagError) and f"{bad}:2:" in str(res.exception)


def test_the_baseline_refuses_by_the_chats_rule_unknown_words_included():
    from notes_rag.eval.runner import baseline_answer

    item = EvalItem("un2", "pl", ["Jak zrobić sernik?"], [], None, answerable=False)
    chunks = [RetrievedChunk("Sernik piecze się godzinę.", "a.md")]
    assert not baseline_answer(item, Retrieval(chunks, 0.99), 0.8).abstained
    assert baseline_answer(item, Retrieval(chunks, 0.99, unknown_words=("zrobić", "sernik")), 0.8).abstained
    assert baseline_answer(item, Retrieval(chunks, 0.99, unknown_names=("Sernik",)), 0.8).abstained
    assert baseline_answer(item, Retrieval(chunks, 0.5), 0.8).abstained  # under the cosine threshold
    assert not baseline_answer(item, Retrieval(chunks, 0.5, names_in_top=True), 0.8).abstained
