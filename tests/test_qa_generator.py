"""QA generation from pretraining text: templates, filters, grounding."""

import random

from notes_rag.sft.qa_generator import GenConfig, doc_title_file, generate, generate_doc

PL_DOC = {
    "source": "koduj-z-klasa/python101@abc/docs/podstawy/python.rst",
    "lang": "pl",
    "text": (
        "Python to język programowania wysokiego poziomu, ogólnego przeznaczenia. Jego składnia jest "
        "czytelna i zwięzła, a python jest popularny w nauce.\n\n"
        "Python 3.0 został wydany w 2008 roku i nie jest zgodny wstecz z wersją 2.\n\n"
        "Biblioteka standardowa obejmuje moduły do obsługi plików, sieci, wyrażeń regularnych i dat. "
        "Każda biblioteka ma dokumentację.\n\n"
        "Kurs ma 12 modułów dla początkujących i zaawansowanych uczniów. Kurs ma 3 moduły dodatkowe.\n\n"
        "Lista jest strukturą danych przechowującą uporządkowane elementy dowolnego typu, a lista może rosnąć.\n\n"
        "To jest ważne dla wszystkich uczniów, którzy zaczynają naukę. "
        "Podejście to umożliwia szybkie działanie programu."
    ),
}
EN_DOC = {
    "source": "github:d2l-ai/d2l-en@23d7a5a:chapter_basics/decorators.md",
    "lang": "en",
    "text": (
        "A decorator is a function that takes another function and extends its behaviour without changing it.\n\n"
        "The standard library includes modules for files, networking, regular expressions, and dates.\n\n"
        "Python 3.0 was released in 2008 as a major revision of the language.\n\n"
        "This is a short note about something else entirely, written for testing only."
    ),
}
WIKI_DOC = {
    "source": "pl.wikipedia.org/wiki/Maria_Skłodowska-Curie via poleval",
    "lang": "pl",
    "text": (
        "Maria Skłodowska-Curie (ur. 7 listopada 1867 w Warszawie, zm. 4 lipca 1934) – polska fizyczka i "
        "chemiczka, dwukrotna laureatka Nagrody Nobla.\n\n"
        "W 1903 roku otrzymała wraz z mężem Nagrodę Nobla w dziedzinie fizyki za badania nad promieniotwórczością."
    ),
}


def _questions(doc, **cfg):
    exs, anchors = generate_doc(doc, random.Random(0), GenConfig(max_per_doc=50, followup_rate=0, xling_rate=0, **cfg))
    return exs, anchors, {qa.question: qa for ex in exs for qa in ex.qas}


def test_every_answer_is_copied_from_its_passage():
    for doc in (PL_DOC, EN_DOC, WIKI_DOC):
        exs, anchors, _ = _questions(doc)
        assert exs
        for ex in exs:
            for qa in ex.qas:
                text = ex.anchors[qa.anchor].text
                assert qa.answer in text
                assert text[qa.start : qa.start + len(qa.span)] == qa.span
                assert ex.anchors[qa.anchor] in anchors


def test_polish_templates():
    _, _, qs = _questions(PL_DOC)
    assert any(q in qs for q in ("Czym jest Python?", "Co to jest Python?", "Wyjaśnij, czym jest Python."))
    assert "Kiedy został wydany Python 3.0?" in qs
    assert "Co obejmuje biblioteka standardowa?" in qs
    assert "Ile modułów ma Kurs?" in qs  # 12 takes the genitive plural, like "ile"
    assert not any("moduły" in q for q in qs)  # 3 does not: no template
    assert not any(q.startswith(("Czym jest To", "Co to jest Podejście")) for q in qs)
    assert not any("„To" in q or "„Podejście" in q or "„podejście" in q for q in qs)
    assert "Python 3.0 został wydany w 2008 roku" in qs["Kiedy został wydany Python 3.0?"].answer
    assert qs["Ile modułów ma Kurs?"].answer.startswith("Kurs ma 12 modułów")
    assert any(q.endswith("lista?") or "„lista”" in q for q in qs)  # common noun lower-cased


def test_english_templates():
    _, _, qs = _questions(EN_DOC)
    assert any(q in qs for q in ("What is a decorator?", "Explain what a decorator is.", "Define a decorator."))
    assert "What does the standard library include?" in qs
    assert "When was Python 3.0 released?" in qs
    assert not any("This" in q for q in qs)


def test_wikipedia_person_and_topic():
    _, _, qs = _questions(WIKI_DOC)
    assert "Kim była Maria Skłodowska-Curie?" in qs
    assert "Kiedy urodziła się Maria Skłodowska-Curie?" in qs
    assert any("„Maria Skłodowska-Curie”" in q for q in qs)  # topic question, title quoted
    assert "Co wydarzyło się w 1903 roku według notatek o „Maria Skłodowska-Curie”?" in qs


def test_followups_and_cross_lingual():
    doc = {
        **PL_DOC,
        "text": PL_DOC["text"] + "\n\nDjango to framework do tworzenia aplikacji internetowych w Pythonie.",
    }
    exs, _ = generate_doc(doc, random.Random(1), GenConfig(max_per_doc=50, followup_rate=1.0, xling_rate=0))
    multi = [e for e in exs if len(e.qas) > 1]
    assert multi and all(e.qas[1].question.startswith("A ") for e in multi)
    for e in multi:  # each turn cites one of the conversation's passages
        assert all(qa.answer in e.anchors[qa.anchor].text for qa in e.qas)
    exs, _ = generate_doc(doc, random.Random(1), GenConfig(max_per_doc=50, followup_rate=0, xling_rate=1.0))
    xling = [e for e in exs if e.source == "gen_xling"]
    assert xling and all(e.lang == "en" for e in xling)
    assert all(e.qas[0].question.startswith(("What is", "Explain", "Define")) for e in xling)


def test_labels_and_cap():
    assert doc_title_file(WIKI_DOC["source"])[0] == "Maria Skłodowska-Curie"
    title, file, entity = doc_title_file(PL_DOC["source"])
    assert (title, file, entity) == ("Python", "podstawy/python.md", False)
    exs, anchors = generate([PL_DOC, EN_DOC], random.Random(0), max_items=3, pool="pre:test")
    assert len(exs) == 3 and all(e.pool == "pre:test" for e in exs)
    assert len({a.key for a in anchors}) == 2  # split key = document
