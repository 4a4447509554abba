from notes_rag.chat.format import ABSTAIN
from notes_rag.eval.sft_metrics import normalize_answer, score_item, select_items, summarize, token_f1


def test_normalize_and_f1():
    assert normalize_answer("The Tokenizer, splits [2] text!") == ["tokenizer", "splits", "text"]
    assert token_f1("dzieli tekst na tokeny [1]", "Dzieli tekst na tokeny.") == 1.0
    assert 0 < token_f1("tekst na tokeny i coś", "dzieli tekst na tokeny") < 1
    assert token_f1("zupełnie inne", "dzieli tekst") == 0.0


def test_score_item_answerable_and_not():
    rec = {"lang": "pl", "gold_passage": 2, "gold_answer": "dzieli tekst na tokeny"}
    s = score_item(rec, "Tokenizacja dzieli tekst na tokeny. [2]")
    assert s.citation_ok and s.f1 > 0.7 and not s.abstained
    assert not score_item(rec, "dzieli tekst na tokeny [1][2]").citation_ok
    una = {"lang": "en", "gold_passage": None}
    assert score_item(una, ABSTAIN["en"]).abstained
    summary = summarize([s, score_item(una, ABSTAIN["en"]), score_item(una, "Paris [1]")])
    assert summary["all"]["abstention_accuracy"] == 0.5
    assert summary["pl"]["citation_accuracy"] == 1.0


def test_select_items_balances_groups():
    recs = [
        {"task": "qa", "passages": [1], "lang": lang, "gold_passage": gp}
        for lang in ("pl", "en")
        for gp in (1, None)
        for _ in range(10)
    ]
    recs.append({"task": "translate", "passages": [], "lang": "pl", "gold_passage": None})
    chosen = select_items(recs, 3)
    assert len(chosen) == 12 and all(r["task"] == "qa" for r in chosen)
