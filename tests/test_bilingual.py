"""Bilingual query expansion: dictd parsing, inflected lookup, translation groups, retrieval.

Every dictionary here is a tiny fake in dictd format written to a tmp dir (index with base-64
offsets, gzip-compressed data, which is what dictzip is to a reader); nothing reads
/usr/share/dictd.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.errors import NotesRagError
from notes_rag.index.bilingual import Bilingual, Dictionary, dictd_number, parse_eng_pol, parse_pol_eng, read_index
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
from notes_rag.index.lexical import LexicalIndex
from notes_rag.index.search import RetrievalConfig, Retriever

_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

ENG_POL = {
    "train": "train /treɪn/\nI.  <N> 1.  pociąg, kolejka\n 2.  tren\nII.  <V> 1.  tresować\n"
    " 2.  trenować, ćwiczyć (for sth - do czegoś, na coś)\n 4.  by train (:by :train)\n"
    " - pociągiem, koleją\n",
    "model": "model /ˈmɒdəl/\nI.  <N> 1.  model\n 2.  [jasności]  przykład, wzór\n"
    " 3.  model oneself (model V: PROREFL :on)\n - wzorować się\n",
    "head": "head /hed/ <N>\n 1.  głowa\n 2.  głowica\n 3. the head  szef\n",
    "attention": "attention /əˈtenʃən/ <N>\n  uwaga\n",
    "disadvantage": "disadvantage /ˌdɪsədˈvɑ:ntɪʤ/ <N>\n 1.  strona ujemna, wada\n",
}
POL_ENG = {
    "trenować": "trenować /trɛnˈɔvatɕ/ <v>\n1. train\n(sport, sportowy) kierować rozwojem sprawności\n"
    "2. train, work out\nćwiczyć celem poprawienia swojej sprawności\n",
    "głowica": "głowica /ɡwɔˈvʲiʦ̑a/ <n>\nhead\ngórna część urządzenia\n",
    "uwaga": "uwaga /uˈvaɡa/ <n>\n1. attention 2.\nskupienie się na czymś\n 3.\nspostrzeżenie\n"
    "2. remark, comment\nwypowiedź\n",
    "wada": "wada /ˈvada/ <n>\nfault, flaw\nujemna cecha charakteru\n",
    "model": "model /ˈmɔdɛl/ <n>\n1. model\nopis układu\n",
}


def dictd_digits(n: int) -> str:
    out = ""
    while True:
        out = _DIGITS[n % 64] + out
        n //= 64
        if n == 0:
            return out


def write_dictd(folder: Path, name: str, entries: dict[str, str]) -> None:
    """A dictd dictionary: NAME.index (sorted headwords, base-64 offset/length) and NAME.dict.dz."""
    data, lines = b"", ["00databaseinfo\tA\tB"]
    for headword in sorted(entries):
        raw = entries[headword].encode("utf-8")
        lines.append(f"{headword}\t{dictd_digits(len(data))}\t{dictd_digits(len(raw))}")
        data += raw
    (folder / f"{name}.index").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with gzip.open(folder / f"{name}.dict.dz", "wb") as f:
        f.write(data)


@pytest.fixture()
def dict_dir(tmp_path):
    folder = tmp_path / "dictd"
    folder.mkdir()
    write_dictd(folder, "freedict-eng-pol", ENG_POL)
    write_dictd(folder, "freedict-pol-eng", POL_ENG)
    return folder


def test_dictd_numbers_and_index():
    assert [dictd_number(s) for s in ("A", "B", "BA", "/", "BAA", "Cwg6")] == [0, 1, 64, 63, 4096, 723002]
    assert all(dictd_number(dictd_digits(n)) == n for n in (0, 5, 64, 4095, 10**6))
    index = read_index("00databaseurl\tE4bp\tI\nmodel\tCwg6\tF5\nmodel\tB\tC\n")
    assert index == {"model": [(723002, 377), (1, 2)]}


def test_parse_eng_pol_skips_labels_phrases_and_pronunciation():
    assert parse_eng_pol(ENG_POL["train"]) == ["pociąg", "kolejka", "tren", "tresować", "trenować", "ćwiczyć"]
    assert parse_eng_pol(ENG_POL["model"]) == ["model", "przykład", "wzór"]
    assert parse_eng_pol(ENG_POL["head"]) == ["głowa", "głowica"]  # "the head  szef" is a phrase
    assert parse_eng_pol("number /n/\nI.  <N> 1.  numer\n 2.  a. liczyć\n b.\n") == ["numer", "liczyć"]


def test_parse_pol_eng_takes_translation_lines_not_definitions():
    assert parse_pol_eng(POL_ENG["trenować"]) == ["train", "train", "work out"]
    assert parse_pol_eng(POL_ENG["uwaga"]) == ["attention", "remark", "comment"]
    assert parse_pol_eng(POL_ENG["wada"]) == ["fault", "flaw"]


def test_lookup_handles_inflection(dict_dir):
    pl = Dictionary.read(dict_dir, "freedict-pol-eng")
    en = Dictionary.read(dict_dir, "freedict-eng-pol")
    assert pl.lookup("głowicy") == ["head"]  # cut to głowic-, completed to głowica
    assert pl.lookup("Uwagi") == ["attention", "remark", "comment"]
    assert pl.lookup("trenowania") == ["train", "work out"]
    assert pl.lookup("modeli") == ["model"]
    assert en.lookup("models") == ["model", "przykład", "wzór"]
    assert en.lookup("trained")[:2] == ["pociąg", "kolejka"]
    assert en.lookup("disadvantages") == ["strona ujemna", "wada"]
    assert pl.lookup("kot") == [] and en.lookup("cat") == []


def test_translate_groups_words_and_keeps_untranslatable_terms(dict_dir):
    bi = Bilingual.load(dict_dir, lexicon=False)
    assert bi.translate("Czy głowice uwagi trenowano na BERT?", "pl") == [
        ["head"],
        ["attention", "remark", "comment"],
        ["train", "work out"],
        ["bert"],
    ]
    assert bi.translate("What are the disadvantages of the model?", "en") == [
        ["strona ujemna", "wada"],
        ["model", "przykład", "wzór"],
    ]
    assert bi.translate("GPT-3 BERT", "en") == []  # nothing translated: no second query


def test_missing_dictionaries_disable_expansion(tmp_path, dict_dir):
    assert Bilingual.load(tmp_path / "nowhere", lexicon=False) is None
    assert Bilingual.load(tmp_path, lexicon=False) is None
    only_pl = tmp_path / "only-pl"
    only_pl.mkdir()
    write_dictd(only_pl, "freedict-pol-eng", POL_ENG)
    bi = Bilingual.load(only_pl, lexicon=False)
    assert bi.translate("What is attention?", "en") == []
    assert bi.translate("Czym jest uwaga?", "pl") == [["attention", "remark", "comment"]]


def test_english_words_missing_from_eng_pol_are_found_through_pol_eng(dict_dir):
    bi = Bilingual.load(dict_dir, lexicon=False)
    assert bi.by_source["en"].lookup("flaw") == []  # not an eng-pol headword
    assert bi.translate("Which flaws does it have?", "en") == [["wada"]]  # "flaws" -> flaw -> wada
    assert bi.reverse_lookup("comment", "en") == ["uwaga"]
    assert bi.reverse_lookup("uwaga", "pl") == []  # only English is read backwards


def test_broken_dictionary_is_one_readable_error(dict_dir):
    (dict_dir / "freedict-pol-eng.dict.dz").write_bytes(b"not gzip at all")
    with pytest.raises(NotesRagError, match="freedict-pol-eng.*reinstall"):
        Bilingual.load(dict_dir, lexicon=False)


def test_search_groups_scores_the_best_alternative_once():
    lex = LexicalIndex.build(
        [10, 11, 12], ["attention attention attention", "remark about cats", "dogs and horses and cats"]
    )
    ids = [c for c, _ in lex.search_groups([["attention", "remark"]], 3)]
    assert ids == [10, 11]
    # Many alternatives do not add up: a chunk holding two of one word's senses scores as one.
    two = LexicalIndex.build([1, 2, 3], ["head attention", "head", "cats"])
    s = dict(two.search_groups([["head", "attention"]], 3))
    assert s[1] == pytest.approx(max(dict(two.search("head", 3))[1], dict(two.search("attention", 3))[1]))


NOTE_PL = (
    "# Uwaga\n\nKażda głowica uwagi ma własne macierze zapytań i kluczy, wspólne dla wszystkich tokenów sekwencji.\n"
)
NOTE_EN = "# Training\n\nA tokenizer splits text into tokens before training starts.\n"
NOTE_EN2 = "# Cats\n\nCats sleep most of the day and hunt at night.\n"


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("bilingual-index")
    notes = root / "notes"
    notes.mkdir()
    for name, text in (("uwaga.md", NOTE_PL), ("train.md", NOTE_EN), ("cats.md", NOTE_EN2)):
        (notes / name).write_text(text, encoding="utf-8")
    encoder = load_encoder(build_tiny_encoder(root / "encoder"))
    update_index(notes, root / "index", encoder)
    return root / "index", encoder


def test_english_question_finds_polish_note_lexically(tiny_index, dict_dir):
    index_dir, encoder = tiny_index
    question = "Does each attention head have its own matrices?"
    on = Retriever(index_dir, encoder, RetrievalConfig(dict_dir=str(dict_dir)))
    assert on.search(question, k=1, mode="bm25")[0].file == "uwaga.md"
    # the tiny test encoder is random (and its trained WordPiece ids can differ between runs), so
    # hybrid is checked with the dense rankings weighted out: the translated BM25 must reach it
    lexical = Retriever(
        index_dir, encoder, RetrievalConfig(dict_dir=str(dict_dir), dense_weight=0.0, translated_dense_weight=0.0)
    )
    assert "uwaga.md" in {h.file for h in lexical.search(question, k=2, mode="hybrid")}
    off = Retriever(index_dir, encoder, RetrievalConfig(dict_dir=str(dict_dir), bilingual=False))
    assert off.bilingual is None
    assert all(h.file != "uwaga.md" for h in off.search(question, k=3, mode="bm25"))


def test_hybrid_also_embeds_the_translated_words(tiny_index, dict_dir, monkeypatch):
    index_dir, encoder = tiny_index
    r = Retriever(index_dir, encoder, RetrievalConfig(dict_dir=str(dict_dir)))
    seen = []
    real = r._dense
    monkeypatch.setattr(r, "_dense", lambda queries, n: seen.append(list(queries)) or real(queries, n))
    r.search("Does each attention head have its own matrices?", k=2, mode="hybrid")
    question, translated = seen[-1]
    assert {"uwaga", "głowa"} <= set(translated.split())  # first translation of each word
    r.search("Does each attention head have its own matrices?", k=2, mode="bm25")
    assert len(seen[-1]) == 1  # bm25 mode encodes the question only (for the abstention cosine)


def test_retrieval_without_dictionaries_uses_the_packaged_lexicon_alone(tiny_index, tmp_path):
    index_dir, encoder = tiny_index
    absent = Retriever(index_dir, encoder, RetrievalConfig(dict_dir=str(tmp_path / "no-dictd")))
    assert absent.bilingual is not None and absent.bilingual.by_source == {}
    for mode in ("hybrid", "bm25", "dense"):
        for q in ("Czym jest głowica uwagi?", "How are tokens split before training?"):
            assert absent.search(q, k=3, mode=mode).hits  # bm25 lists only chunks sharing a word
