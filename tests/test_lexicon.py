"""The packaged English–Polish lexicon: induction (IBM Model 1), loading, inflected lookup, and
cross-lingual retrieval with no dictionary folder present."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_encoder import build_tiny_index

from notes_rag.errors import NotesRagError
from notes_rag.index.bilingual import Bilingual
from notes_rag.index.lexicon import PACKAGED, Lexicon
from notes_rag.index.lexicon_induction import document_pairs, induce, mo_pairs
from notes_rag.index.search import RetrievalConfig, Retriever

PAIRS = [
    ("The dog sleeps.", "Pies śpi."),
    ("I see the dog.", "Widzę psa."),
    ("The dog eats meat.", "Pies je mięso."),
    ("The cat sleeps.", "Kot śpi."),
    ("I see the cat.", "Widzę kota."),
    ("The cat eats fish.", "Kot je rybę."),
    ("Birds eat fish.", "Ptaki jedzą rybę."),
    ("Birds sleep.", "Ptaki śpią."),
]


def test_ibm_model_1_aligns_words_and_pools_inflected_forms():
    lex = induce(PAIRS)
    assert lex["en"]["dog"][0] in ("pies", "psa")  # 'pies' and 'psa' are different stems: both kept
    assert set(lex["en"]["dog"]) <= {"pies", "psa"}
    assert lex["en"]["cat"][0] in ("kot", "kota") and "pies" not in lex["en"]["cat"]
    assert lex["pl"]["kot"] == ["cat"]
    assert "sleeps" not in lex["en"].get("dog", [])  # companions the other direction rejects


def test_lexicon_round_trip_and_inflected_lookup(tmp_path):
    path = tmp_path / "lex.tsv"
    Lexicon({"en": {"train": ["trenować", "pociąg"]}, "pl": {"treno": ["train"]}}).save(path)
    assert path.read_text(encoding="utf-8").startswith("# English-Polish word lexicon")
    lex = Lexicon.load(path)
    assert lex.lookup("trenowania", "pl") == ["train"]  # any form with the stem 'treno'
    assert lex.lookup("trains", "en") == ["trenować", "pociąg"]
    assert lex.lookup("cat", "en") == [] and lex.lookup("train", "de") == []


def test_broken_lexicon_is_one_readable_error(tmp_path):
    bad = tmp_path / "lex.tsv"
    bad.write_text("en\tonly two fields\n", encoding="utf-8")
    with pytest.raises(NotesRagError, match="not a lexicon line"):
        Lexicon.load(bad)
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(NotesRagError, match="cannot read the lexicon"):
        Lexicon.load(bad)


def test_packaged_lexicon_carries_its_attribution_and_everyday_words():
    assert "Tatoeba" in PACKAGED.read_text(encoding="utf-8").splitlines()[1]
    lex = Lexicon.load()
    assert {"psy", "psów"} & set(lex.lookup("dogs", "en"))
    assert "house" in lex.lookup("domu", "pl")


def _write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo catalogue (little-endian, no hash table) of `messages`, as msgfmt writes it."""
    import struct

    keys = sorted(messages)
    ids, strs = b"", b""
    offsets = []
    for k in keys:
        kb, vb = k.encode(), messages[k].encode()
        offsets.append((len(ids), len(kb), len(strs), len(vb)))
        ids += kb + b"\0"
        strs += vb + b"\0"
    n = len(keys)
    start = 7 * 4 + 16 * n
    table = b"".join(struct.pack("<2I", ln, start + o) for o, ln, _, _ in offsets)
    table += b"".join(struct.pack("<2I", ln, start + len(ids) + o) for _, _, o, ln in offsets)
    header = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    path.write_bytes(header + table + ids + strs)


def test_gettext_catalogues_give_clean_pairs(tmp_path):
    _write_mo(
        tmp_path / "app.mo",
        {"": "Content-Type: text/plain; charset=UTF-8\n", "_Open file %s": "_Otwórz plik %s", "OK": "OK"},
    )
    _write_mo(tmp_path / "iso_3166.mo", {"Germany": "Niemcy"})  # names, not vocabulary: skipped
    (tmp_path / "broken.mo").write_bytes(b"not a catalogue")
    assert list(mo_pairs(tmp_path)) == [("Open file", "Otwórz plik")]


def _write_kit_file(path: Path, records: list[dict]) -> None:
    import json
    import lzma

    with lzma.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def test_kit_documents_give_sentence_pairs(tmp_path):
    en = (
        "Open the Settings panel of GNOME 43. Then choose the Display tab.\n\n"
        "The file manager Nautilus shows the files of the folder in a grid or a list."
    )
    pl = (
        "Otwórz panel Ustawienia środowiska GNOME 43. Następnie wybierz kartę Ekran.\n\n"
        "Menedżer plików Nautilus pokazuje pliki katalogu w postaci siatki lub listy."
    )
    for name in ("python_docs", "gnome_help", "gnome_apps_help", "debian_handbook"):
        docs = {"en": [], "pl": []}
        if name == "gnome_help":
            docs = {
                "en": [{"text": en, "source": "gnome (C):help/display.page", "lang": "en"}],
                "pl": [{"text": pl, "source": "gnome (pl):help/display.page", "lang": "pl"}],
            }
        for lang, records in docs.items():
            _write_kit_file(tmp_path / f"{lang}_{name}.jsonl.xz", records)
    pairs = list(document_pairs(tmp_path))
    # the first paragraphs have two sentences each: cut into two pairs; the second stays whole
    assert ("Then choose the Display tab.", "Następnie wybierz kartę Ekran.") in pairs
    assert any(e.startswith("The file manager Nautilus") and p.startswith("Menedżer plików") for e, p in pairs)


def test_packaged_lexicon_knows_technical_words():
    lex = Lexicon.load()
    assert {"plik", "pliku"} & set(lex.lookup("file", "en"))
    assert "layer" in lex.lookup("warstwy", "pl")


def test_without_dictionaries_the_lexicon_still_translates(tmp_path):
    bi = Bilingual.load(tmp_path / "no-dictd")
    assert bi is not None and bi.by_source == {}
    groups = bi.translate("Where does the dog sleep?", "en")
    assert any({"pies", "psa"} & set(g) for g in groups)
    assert Bilingual.load(tmp_path / "no-dictd", lexicon=False) is None


NOTES = {
    "psy.md": "# Zwierzęta\n\nPies śpi w domu, a kot łowi ryby nad wodą.\n",
    "gpu.md": "# Hardware\n\nA GPU multiplies matrices quickly; memory bandwidth limits it.\n",
    "tok.md": "# Tokens\n\nA tokenizer splits text into tokens before training starts.\n",
}


def test_english_question_finds_polish_note_with_no_dictionary_folder(tmp_path):
    index_dir, encoder = build_tiny_index(tmp_path, NOTES)
    r = Retriever(index_dir, encoder, RetrievalConfig(dict_dir=str(Path(tmp_path) / "nowhere")))
    # BM25 alone: the question shares no word with the Polish note, only its translation does
    assert r.search("Where does the dog sleep?", k=1, mode="bm25")[0].file == "psy.md"
    off = Retriever(index_dir, encoder, RetrievalConfig(bilingual=False))
    assert all(h.file != "psy.md" for h in off.search("Where does the dog sleep?", k=3, mode="bm25"))
