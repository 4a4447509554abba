"""Generator items: the answer follows the reader's input, targets only on the answer, copy
sources only on prompt text, note rendering keeps every sentence, uncopyable answers left out."""

from __future__ import annotations

import random

import torch

from notes_rag.sft.generator_data import as_notes, batch_of, items_of_record, special_ids
from notes_rag.text import sentences

PASSAGES = [
    ("neurony.md › Historia", "W 1943 roku McCulloch i Pitts zaproponowali model neuronu. Potem przyszła zima AI."),
    ("bpe.md › Tokenizacja", "BPE breaks unknown words into smaller subword units. It starts from bytes."),
]


def _record(turns: list[tuple[str, str]], golds: list[dict]) -> dict:
    return {
        "system": "",
        "passages": [{"label": a, "text": b} for a, b in PASSAGES],
        "task": "qa",
        "source": "t",
        "lang": "pl",
        "turns": [t for q, a in turns for t in ({"role": "user", "content": q}, {"role": "assistant", "content": a})],
        "golds": golds,
    }


def test_items_targets_and_copy_sources(tok):
    rec = _record(
        [
            ("Kto zaproponował model neuronu?", "W 1943 roku McCulloch i Pitts zaproponowali model neuronu. [1]"),
            ("Ile kosztował GPT-3?", "Nie znalazłem tego w notatkach."),
            ("What does BPE do?", "Tokenizers are magic and never fail. [2]"),  # not in the passages
        ],
        [{"passage": 1, "answer": "McCulloch i Pitts"}, {"passage": None, "answer": ""}, {"passage": 2, "answer": "x"}],
    )
    items = items_of_record(rec, tok, 512)
    assert [it.answerable for it in items] == [True, False]  # the made-up answer is left out
    x, y = batch_of(items, special_ids(tok))
    for b, it in enumerate(items):
        p, n = it.prompt_len, len(it.ids)
        assert x["ids"][b, p - 1] == tok.special("assistant")
        assert (y[b, : p - 1] == -1).all() and (y[b, n - 1 :] == -1).all()
        assert torch.equal(y[b, p - 1 : n - 1], x["ids"][b, p:n])  # next-token targets on the answer
        assert tok.decode(x["ids"][b, p:n].tolist()).endswith("<|end|>")
        assert not x["copy_mask"][b, p:].any()  # the answer is never its own source
        specials = torch.isin(x["ids"][b, :p], special_ids(tok))
        assert torch.equal(x["copy_mask"][b, :p], ~specials)
    answer = tok.decode(items[0].ids[items[0].prompt_len :].tolist())
    assert "McCulloch i Pitts" in answer


def test_note_styles_keep_every_sentence():
    text = PASSAGES[0][1] + " " + PASSAGES[1][1]
    seen = set()
    for seed in range(40):
        notes = as_notes(text, "a.md › Tytuł", random.Random(seed))
        for s in sentences(text):
            assert s in notes
        seen.add(notes.split("\n")[0][:2])
    assert len(seen) >= 3  # prose, lines, bullets and slides all occur


def test_the_answer_starts_with_tokens_the_copy_head_can_copy(tok):
    """An answer's first word tokenized at its start is often not the passage's token (which
    follows a space): the target takes the form whose first tokens occur in the prompt."""
    from notes_rag.sft.generator_data import answer_forms, answer_tokens

    prompt = tok.encode("Mechanizm uwagi (attention) liczy podobieństwo zapytania do klucza.")
    plain, spaced = forms = answer_forms(tok, "podobieństwo zapytania do klucza")
    assert plain[:2] != spaced[:2]  # the tiny vocabulary splits the two forms differently too
    assert answer_tokens(forms, prompt) == spaced
    at_line_start = tok.encode("podobieństwo zapytania do klucza.")
    assert answer_tokens(forms, at_line_start) == plain  # the form as written comes first
    assert answer_tokens(forms, tok.encode("Nic wspólnego.")) == plain  # neither occurs: as written
    # an abstention keeps the one form the chat's no-answer score reads
    assert answer_forms(tok, "podobieństwo zapytania", answerable=False) == (tok.encode("podobieństwo zapytania"),)
    rec = _record([("Kto zaproponował model neuronu?", "McCulloch i Pitts [1]")], [{"passage": 1}])
    (it,) = items_of_record(rec, tok, 512)
    answer = it.ids[it.prompt_len : -1].tolist()
    assert tok.decode(answer).strip() == "McCulloch i Pitts [1]"
    assert any(it.ids[j : j + 2].tolist() == answer[:2] for j in range(it.prompt_len))  # a copyable start
