"""The chat format: how a conversation over retrieved passages becomes tokens, and back.

One implementation shared by `finetune` (ids + loss mask), `chat` (prompt ids) and `eval`
(abstention and citation parsing). Layout, with the tokenizer's special tokens::

    <|bos|><|system|>{system}<|end|>
    <|passage|>[1] {label}\n{text}<|end|>   ... one per passage, numbered 1..k
    <|user|>{question}<|end|><|assistant|>{answer}<|end|>   ... one pair per exchange

All text goes through `Tokenizer.encode`, which never produces special tokens, so a note that
literally contains ``<|user|>`` stays plain text and cannot forge a turn. The loss mask is 1 on
the assistant's content tokens and its closing ``<|end|>`` (the model must learn to stop), and 0
everywhere else, including the ``<|assistant|>`` opener, which the prompt always supplies.

The answer style and the exact abstention strings are documented in docs/CHAT_FORMAT.md;
`chat` and `eval` rely on `ABSTAIN`, `is_abstention` and `extract_citations`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from notes_rag.model.tokenizer import Tokenizer

ABSTAIN = {
    "pl": "Nie znalazłem tego w notatkach.",
    "en": "I couldn't find that in your notes.",
}
# Appended to the abstention when the question names something the notes never mention.
NOT_MENTIONED = {"pl": "Notatki nie wspominają o: {names}.", "en": "Your notes never mention {names}."}

SYSTEM_PROMPT = {
    "pl": (
        "Odpowiadaj wyłącznie na podstawie ponumerowanych fragmentów notatek. Odpowiadaj krótko, "
        "w języku pytania, i podawaj numer fragmentu w nawiasie, np. [2]. Jeśli fragmenty nie "
        f"zawierają odpowiedzi, napisz: {ABSTAIN['pl']}"
    ),
    "en": (
        "Answer only from the numbered note passages. Answer briefly, in the language of the "
        "question, and cite the passage number in brackets, e.g. [2]. If the passages do not "
        f"contain the answer, say: {ABSTAIN['en']}"
    ),
}

# Passage-free tasks (instructions, translation) get a plain assistant prompt: telling the model
# to answer "only from passages" when there are none would teach it to ignore the system prompt.
INSTRUCT_PROMPT = {
    "pl": "Jesteś pomocnym asystentem do nauki. Odpowiadaj krótko i rzeczowo.",
    "en": "You are a helpful study assistant. Answer briefly and to the point.",
}

ROLES = ("user", "assistant")


@dataclass
class Passage:
    label: str  # "file › heading path"; one line (newlines are rendered as spaces)
    text: str


@dataclass
class Turn:
    role: str  # "user" | "assistant"
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"turn role must be one of {ROLES}, got {self.role!r}")


@dataclass
class Conversation:
    system: str
    passages: list[Passage] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Conversation:
        return cls(
            system=d["system"],
            passages=[Passage(p["label"], p["text"]) for p in d.get("passages", [])],
            turns=[Turn(t["role"], t["content"]) for t in d.get("turns", [])],
        )


def _passage_header(i: int, label: str) -> str:
    return f"[{i}] {label.replace(chr(10), ' ')}\n"


def render(conv: Conversation, tok: Tokenizer, max_passage_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and a loss mask of the same length.

    `max_passage_tokens` cuts each passage's text (not its header) to that many tokens, so a
    caller with a fixed context can bound the prompt; the cut may fall inside a word.
    """
    end = tok.special("end")
    ids = [tok.special("bos"), tok.special("system"), *tok.encode(conv.system), end]
    mask = [0] * len(ids)

    def add(chunk: list[int], learn: bool) -> None:
        ids.extend(chunk)
        mask.extend([int(learn)] * len(chunk))

    for i, p in enumerate(conv.passages, 1):
        body = tok.encode(p.text)
        if max_passage_tokens is not None:
            body = body[:max_passage_tokens]
        add([tok.special("passage"), *tok.encode(_passage_header(i, p.label)), *body, end], False)
    for t in conv.turns:
        add([tok.special(t.role)], False)
        add([*tok.encode(t.content), end], t.role == "assistant")
    return ids, mask


def render_prompt(conv: Conversation, tok: Tokenizer, max_passage_tokens: int | None = None) -> list[int]:
    """Ids for inference: the conversation so far, ending with ``<|assistant|>``."""
    if not conv.turns or conv.turns[-1].role != "user":
        raise ValueError("render_prompt needs a conversation whose last turn is the user's")
    ids, _ = render(conv, tok, max_passage_tokens)
    return [*ids, tok.special("assistant")]


_HEADER = re.compile(r"\[(\d+)\] ([^\n]*)\n", re.DOTALL)


def parse(ids: list[int], tok: Tokenizer) -> Conversation:
    """Inverse of `render` (without truncation): ids back to a Conversation.

    A trailing unterminated segment (a prompt ending in ``<|assistant|>``, or a generation cut
    off before ``<|end|>``) becomes a turn with whatever content it has.
    """
    specials = {tok.special(n): n for n in ("bos", "system", "user", "assistant", "passage", "end")}
    conv = Conversation(system="")
    role, buf = None, []

    def close() -> None:
        text = tok.decode(buf)
        if role == "system":
            conv.system = text
        elif role == "passage":
            m = _HEADER.match(text)
            if not m:
                raise ValueError(f"malformed passage header: {text[:60]!r}")
            conv.passages.append(Passage(label=m.group(2), text=text[m.end() :]))
        elif role in ROLES:
            conv.turns.append(Turn(role, text))

    for t in ids:
        name = specials.get(t)
        if name is None:
            if role is None:
                raise ValueError("text outside any segment")
            buf.append(t)
        elif name == "end":
            close()
            role, buf = None, []
        elif name != "bos":
            if role is not None:
                close()
            role, buf = name, []
    if role is not None:
        close()
    return conv


_NORM = re.compile(r"[^\w]+")


def _norm(text: str) -> str:
    return _NORM.sub(" ", text.lower().replace("’", "'").replace("could not", "couldn't")).strip()


_ABSTAIN_NORM = [_norm(s) for s in ABSTAIN.values()]


def is_abstention(text: str) -> bool:
    """True if the answer says the notes do not cover the question (either language)."""
    t = _norm(text)
    return any(a in t for a in _ABSTAIN_NORM)


_CITE = re.compile(r"\[(\s*\d+(?:\s*,\s*\d+)*\s*)\]")


def extract_citations(text: str) -> list[int]:
    """Passage numbers cited as ``[2]``, ``[1][3]`` or ``[1, 3]``, in order, without repeats."""
    out: list[int] = []
    for m in _CITE.finditer(text):
        for n in m.group(1).split(","):
            v = int(n)
            if v not in out:
                out.append(v)
    return out


def strip_citations(text: str) -> str:
    """The text with its ``[n]`` citation markers replaced by spaces."""
    return _CITE.sub(" ", text)
