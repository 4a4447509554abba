"""Our GPT writes a card's question: passage plus answer span in, question out.

The input is the question-generation input of training (sft/question_data.py `qg_input`); the
copy head decodes greedily under a word constraint (model/constraint.py): the question may use
the passage's words, the language's question words and glue words, but none of the answer's own
content words, so it cannot give its answer away. Decoding stops after the first "?" or at
`MAX_QUESTION_TOKENS`. A model that was never taught the task writes an answer or an abstention
instead; the checks (study/checks.py) reject that and the template card is used.
"""

from __future__ import annotations

from notes_rag.model.tokenizer import SPECIAL_TOKENS, Tokenizer
from notes_rag.sft.question_data import qg_input
from notes_rag.text import fold, lowercase_words

MAX_QUESTION_TOKENS = 40
QUESTION_WORDS = {
    "en": "what which who whom whose when where why how many much does do did is are was were can name",
    "pl": "co czym czego kto kogo kim kiedy gdzie dlaczego czemu jak jaki jaka jakie jakich jakim ile który "
    "która które którego której w jakim roku na czym polega do czego służy wymień podaj",
}


def _allowed(passage: str, answer: str, lang: str) -> list[str]:
    """The passage's words and the question words, less the answer's own content words."""
    banned = {w for w in lowercase_words(answer) if len(w) >= 3 and fold(w) not in fold(QUESTION_WORDS[lang])}
    return [w for w in lowercase_words(passage + " " + QUESTION_WORDS[lang]) if w not in banned]


def write_question(model, tok: Tokenizer, label: str, passage: str, answer: str, lang: str) -> str:
    """The model's question about `passage` whose answer is `answer` ("" when it writes none)."""
    from notes_rag.model.constraint import GLUE_WORDS, WordConstraint
    from notes_rag.model.engine import SamplingConfig, generate_copy
    from notes_rag.model.reader import copy_sources

    lang = lang if lang in QUESTION_WORDS else "en"
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    inp = qg_input(tok, label, passage, answer, lang, max_len=model.config.seq_len - MAX_QUESTION_TOKENS)
    allowed = [w for w in _allowed(passage, answer, lang) if w]
    constraint = WordConstraint(tok.token_bytes, tok.special_ids.values(), set(allowed) | set(GLUE_WORDS), specials)
    ids = generate_copy(
        model,
        inp.ids,
        copy_sources(inp.ids, set(specials)),
        inp.match,
        SamplingConfig(temperature=0.0, max_new_tokens=MAX_QUESTION_TOKENS),
        stop_ids=specials,
        constraint=constraint,
    )
    out: list[int] = []
    for i in ids:
        out.append(i)
        if "?" in tok.decode([i]):
            break
    return " ".join(tok.decode(out).split())
