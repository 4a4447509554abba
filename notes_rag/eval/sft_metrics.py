"""Grounded-QA metrics of a finetuned model on held-out SFT conversations.

For each held-out QA conversation the model answers the last question greedily from the same
prompt it was trained on; we score, per language: exact match and token F1 of the answer
against the gold answer (SQuAD-style normalisation, citation markers removed), citation
accuracy (the cited passage numbers include the gold passage and nothing else), and abstention
accuracy on unanswerable items (plus false abstentions on answerable ones).
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

from notes_rag.chat.format import Conversation, extract_citations, is_abstention, render_prompt, strip_citations
from notes_rag.model.engine import CopyBias, SamplingConfig, generate
from notes_rag.model.gpt import GPT
from notes_rag.model.tokenizer import Tokenizer


def normalize_answer(text: str) -> list[str]:
    text = strip_citations(unicodedata.normalize("NFC", text.lower()))
    text = "".join(" " if ch in string.punctuation or ch in "—–„”«»" else ch for ch in text)
    return [w for w in text.split() if w not in {"a", "an", "the"}]


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred), normalize_answer(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or not common:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


@dataclass
class ItemScore:
    lang: str
    answerable: bool
    answer: str
    em: float = 0.0
    f1: float = 0.0
    citation_ok: bool = False
    abstained: bool = False


def score_item(record: dict, answer: str) -> ItemScore:
    answerable = record.get("gold_passage") is not None
    s = ItemScore(record["lang"], answerable, answer, abstained=is_abstention(answer))
    if answerable:
        gold = record.get("gold_answer") or ""
        s.em = float(normalize_answer(answer) == normalize_answer(gold))
        s.f1 = token_f1(answer, gold)
        s.citation_ok = extract_citations(answer) == [record["gold_passage"]]
    return s


def answer(model: GPT, tok: Tokenizer, record: dict, max_new_tokens: int = 80, copy_boost: float = 0.0) -> str:
    conv = Conversation.from_dict(record)
    conv = replace(conv, turns=conv.turns[:-1])  # drop the gold answer of the last turn
    prompt = render_prompt(conv, tok)
    bias = CopyBias(prompt, copy_boost) if copy_boost else None
    ids = generate(
        model, prompt, SamplingConfig(max_new_tokens=max_new_tokens), stop_ids=[tok.special("end")], logit_bias=bias
    )
    return tok.decode(list(ids))


def summarize(scores: list[ItemScore]) -> dict[str, dict]:
    groups: dict[str, list[ItemScore]] = defaultdict(list)
    for s in scores:
        groups[s.lang].append(s)
        groups["all"].append(s)
    out = {}
    for name, items in sorted(groups.items()):
        ans = [s for s in items if s.answerable]
        una = [s for s in items if not s.answerable]
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        out[name] = {
            "answerable": len(ans),
            "unanswerable": len(una),
            "exact_match": mean([s.em for s in ans]),
            "f1": mean([s.f1 for s in ans]),
            "citation_accuracy": mean([float(s.citation_ok) for s in ans]),
            "abstention_accuracy": mean([float(s.abstained) for s in una]),
            "false_abstention": mean([float(s.abstained) for s in ans]),
        }
    return out


def select_items(records: list[dict], per_group: int, seed: int = 0) -> list[dict]:
    """A seeded sample of up to `per_group` QA items per (language, answerable) group."""
    taken: dict[tuple, int] = defaultdict(int)
    out = []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    for r in (records[i] for i in order):
        if r.get("task") != "qa" or not r.get("passages"):
            continue
        key = (r["lang"], r.get("gold_passage") is not None)
        if taken[key] < per_group:
            taken[key] += 1
            out.append(r)
    return out
