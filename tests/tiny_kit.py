"""A tiny data kit written to a temp dir: every SFT kit file (a few Polish and English city
facts as extractive QA, negatives, dialogs, BoolQ, ROPES, instructions, translations) and two
pretraining files, the shape of `shared/data` in a few KB."""

from __future__ import annotations

import json
import lzma
import random
from pathlib import Path

from notes_rag.sft.kit import KIT_FILES

TOPICS = [
    ("Rzym", "Rzym jest stolicą Włoch i leży nad Tybrem. Miasto założono według legendy w 753 roku p.n.e."),
    ("Kraków", "Kraków leży nad Wisłą. Był stolicą Polski do 1596 roku, gdy dwór przeniósł się do Warszawy."),
    ("Gdańsk", "Gdańsk jest miastem portowym nad Morzem Bałtyckim. Słynie z bursztynu i Długiego Targu."),
    ("Wrocław", "Wrocław leży nad Odrą i ma ponad sto mostów. Jest stolicą Dolnego Śląska."),
    ("Poznań", "Poznań leży nad Wartą. Na Starym Rynku codziennie w południe trykają się koziołki."),
    ("Lublin", "Lublin jest największym miastem wschodniej Polski. Działa tam Uniwersytet Marii Curie-Skłodowskiej."),
]
EN_TOPICS = [
    ("Paris", "Paris is the capital of France. The Eiffel Tower was completed in 1889 for the World Fair."),
    ("Berlin", "Berlin is the capital of Germany. The Berlin Wall fell in November 1989."),
    ("Madrid", "Madrid is the capital of Spain. The Prado Museum opened to the public in 1819."),
    ("Rome", "Rome is the capital of Italy. The Colosseum could hold about fifty thousand spectators."),
    ("Vienna", "Vienna is the capital of Austria. It is famous for its coffee houses and classical music."),
    ("Prague", "Prague is the capital of Czechia. Charles Bridge crosses the Vltava river."),
]


def write_xz(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _extractive(topics, lang):
    out = []
    for title, ctx in topics:
        word = ctx.split(". ")[1].split()[1]
        out.append(
            {
                "lang": lang,
                "title": title,
                "context": ctx,
                "question": f"{title}: {word}?",
                "answerable": True,
                "answers": [{"text": word, "answer_start": ctx.index(word)}],
            }
        )
        out.append(
            {
                "lang": lang,
                "title": title,
                "context": ctx,
                "question": f"{title} i księżyc?",
                "answerable": False,
                "answers": [],
            }
        )
    return out


def write_kit(root: Path, pretrain_names=("pl_test", "en_test"), filler_docs: int = 0) -> Path:
    """The SFT kit files in ROOT/sft and two pretraining files in ROOT/pretrain (Polish, English)
    holding the topics and `filler_docs` generated documents each."""
    en, pl = _extractive(EN_TOPICS, "en"), _extractive(TOPICS, "pl")
    files = {
        "en_qa_xquad": [r for r in en if r["answerable"]],
        "en_qa_xquad_negatives": [
            {
                **r,
                "context": EN_TOPICS[(i + 1) % 6][1],
                "title": EN_TOPICS[(i + 1) % 6][0],
                "answers": [],
                "answerable": False,
            }
            for i, r in enumerate(en[::2])
        ],
        "en_dialogqa_xquad_grouped": [
            {
                "lang": "en",
                "title": t,
                "context": c,
                "turns": [
                    {
                        "question": f"Capital of {t}?",
                        "answers": [{"text": "capital", "answer_start": c.index("capital")}],
                        "answerable": True,
                    },
                    {"question": "Moon?", "answers": [], "answerable": False},
                ],
            }
            for t, c in EN_TOPICS
        ],
        "en_qa_squad2_devhalf": en,
        "en_qa_squad2_subset": en[:2],
        "en_qa_boolq": [
            {
                "title": t,
                "context": c,
                "question": f"Is {t} a capital?",
                "answers": [{"text": "yes", "answer_start": -1}],
            }
            for t, c in EN_TOPICS
        ],
        "en_qa_ropes": [
            {
                "title": "",
                "context": c + "\n\nSituation: A visits " + t + ".",
                "question": "Who visits?",
                "answers": [{"text": "A", "answer_start": -1}],
            }
            for t, c in EN_TOPICS
        ],
        "pl_qa_poquad": pl,
        "en_instructions_rasbt": [
            {"lang": "en", "instruction": f"Say {t}.", "input": "", "output": t} for t, _ in EN_TOPICS
        ],
        "enpl_parallel_tatoeba": [
            {"en": f"I like the city of {t} a lot.", "pl": f"Bardzo lubię miasto {p}."}
            for (t, _), (p, _) in zip(EN_TOPICS, TOPICS)
        ],
    }
    assert set(files) == set(KIT_FILES)
    for name, recs in files.items():
        write_xz(root / "sft" / f"{name}.jsonl.xz", recs)
    for name, lang, topics in zip(pretrain_names, ("pl", "en"), (TOPICS, EN_TOPICS)):
        docs = [{"source": f"x/notes/{t}.md", "lang": lang, "text": c} for t, c in topics]
        docs += [{"source": f"x/filler/{i}.md", "lang": lang, "text": _filler(topics, i)} for i in range(filler_docs)]
        write_xz(root / "pretrain" / f"{name}.jsonl.xz", docs)
    return root


def _filler(topics, seed: int, sentences: int = 12) -> str:
    """A document of the topics' sentences in a seeded random order (pretraining bulk)."""
    rng = random.Random(seed)
    pool = [s.strip() + "." for _, c in topics for s in c.split(". ") if s.strip()]
    return " ".join(rng.choice(pool).rstrip(".") + "." for _ in range(sentences))
