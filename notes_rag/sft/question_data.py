"""Question-generation items: the kit's QA reversed, for the study mode's questions.

Question generation is one more instruction-tuning task of the generator: given a note passage
and an answer span in it, write the question. A training pair is a human-written kit question
(SQuAD 2, PoQuAD, XQuAD: `QG_SOURCES`) with its gold passage and gold answer span, read in the
same note-style rendering as the answer training (`generator_data.as_notes`), so the model sees
lines and bullets as in a student's notes. The model input is the generator's
(model/reader.py `encode`): a QG system prompt, the user turn `Answer: <span>` (so the match
flags mark where the answer stands in the passage), the one passage, then `<|assistant|>`; the
target is the question and `<|end|>`. The copy head copies the passage's terms, the LM head
writes the question words.

`qg_input` is the one definition of that input: training items and the study mode's GPT
questions (study/gpt_questions.py) both build it here.
"""

from __future__ import annotations

import random

from notes_rag.model.reader import ReaderInput, encode
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.generator_data import GeneratorItem, as_notes
from notes_rag.text import fold, words

# Sources whose questions people wrote (the kit's template-generated `gen_*` questions would
# teach the model the templates the study mode already has).
QG_SOURCES = ("squad2", "poquad", "xquad")
QG_SYSTEM = {
    "en": "Write one short question about the note passage whose answer is the given answer. "
    "Do not use the answer's words in the question.",
    "pl": "Napisz jedno krótkie pytanie do fragmentu notatek, na które odpowiedzią jest podana "
    "odpowiedź. Nie używaj w pytaniu słów odpowiedzi.",
}
ANSWER_PREFIX = {"en": "Answer: ", "pl": "Odpowiedź: "}
MAX_ANSWER_WORDS = 12  # a longer gold span is a sentence, not a term to be asked about


def qg_input(tok: Tokenizer, label: str, passage: str, answer: str, lang: str, max_len: int = 1024) -> ReaderInput:
    """The model input asking for a question about `passage` whose answer is `answer`."""
    lang = lang if lang in QG_SYSTEM else "en"
    return encode(tok, ANSWER_PREFIX[lang] + answer, [(label, passage)], max_len=max_len, system=QG_SYSTEM[lang])


def _pairs(rec: dict) -> list[tuple[str, int, str]]:
    """(question, gold passage number, answer span) of a record's answerable span questions."""
    questions = [t["content"] for t in rec.get("turns", []) if t["role"] == "user"]
    golds = rec.get("golds") or [{"passage": rec.get("gold_passage"), "answer": rec.get("gold_answer", "")}]
    out = []
    for q, g in zip(questions, golds):
        answer, passage = (g.get("answer") or "").strip(), g.get("passage")
        if not passage or not answer or fold(answer) in ("yes", "no", "tak", "nie"):
            continue
        if len(words(answer)) > MAX_ANSWER_WORDS:
            continue
        out.append((q, passage, answer))
    return out


def qg_items_of_record(rec: dict, tok: Tokenizer, max_len: int, seed: int = 0) -> list[GeneratorItem]:
    """The question-generation items of one kit QA record (none for other sources)."""
    if rec.get("task", "qa") != "qa" or rec.get("source") not in QG_SOURCES:
        return []
    lang = rec.get("lang", "en")
    end = tok.special("end")
    out = []
    for question, number, answer in _pairs(rec):
        if number > len(rec["passages"]):
            continue
        p = rec["passages"][number - 1]
        text = as_notes(p["text"], p["label"], random.Random(f"{seed}:{rec.get('id', '')}:{question}"))
        # the span must still be in the passage as rendered, and the question must not give it away
        if fold(answer) not in fold(text) or fold(answer) in fold(question):
            continue
        target = tok.encode(question.strip()) + [end]
        try:
            inp = qg_input(tok, p["label"], text, answer, lang, max_len=max_len - len(target))
        except ValueError:
            continue
        if fold(answer) not in fold(tok.decode(inp.ids)):  # the span was cut off with the passage's tail
            continue
        out.append(GeneratorItem.of(inp, target, True, lang, f"qg_{rec.get('source', '')}"))
    return out


def build_qg_items(records: list[dict], tok: Tokenizer, max_len: int, seed: int = 0) -> list[GeneratorItem]:
    return [it for rec in records for it in qg_items_of_record(rec, tok, max_len, seed)]
