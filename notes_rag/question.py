"""What a question says about itself: is it a follow-up, and which names does it mention?

`is_follow_up`: is the question meaningful only with the conversation before it?

Retrieval reads every question together with the previous ones, so an elliptic follow-up ("A w
którym roku?", "And Llama 3?") finds the notes the conversation is about. Whether the notes
answer a question at all, though, is decided on the question as asked: "What is the capital of
Australia?" asked after a question about neurons is off-topic, however close the conversation
is to the notes. Only a follow-up borrows the conversation's retrieval evidence. A question is a
follow-up when it

- opens with a continuation ("A ...?", "And ...?", "What about ...?"), or
- refers back with a pronoun ("Who proposed it?", "Kiedy go opublikowano?"), or
- is elliptic: at most `MAX_ELLIPTIC_WORDS` words and no name of its own ("In which year?",
  but not "What is RoPE?": a capitalized word after the first, or one with a digit, is a name), or
- names nothing of its own: no content word besides question words ("Why?", "Dlaczego tak?").

    is_follow_up("A w którym roku?")                    # True
    is_follow_up("What is the capital of Australia?")   # False

`names`: the question's names (RoPE, GPT-3, Mixtral, Tokyo). A question about a name the notes
never mention cannot be answered from them, however close its other words come; retrieval
reports such names (`SearchResult.unknown_names`) and the chat abstains on them.

    names("Na czym polega metoda LoRA?")               # ['LoRA']

`only_names`: a question that asks about nothing but names ("Czym jest RoPE?") is answered when
the top passage holds them all, even under the cosine threshold: a short question about a term
embeds far from any passage (0.82 for "Czym jest RoPE?" against the RoPE slide), yet the notes
plainly speak of it.

`retrieval_refuses`: the one rule the chat and the eval's baseline share for refusing before the
model reads anything: an unknown name, a question made mostly of words no note holds
(`SearchResult.unknown_words`: "How long do I boil an egg?"), or a cosine under the threshold.
"""

from __future__ import annotations

import re

from notes_rag.text import lowercase_words

_TOKEN = re.compile(r"[\w-]+")

MAX_ELLIPTIC_WORDS = 3
OPENERS = ("a", "i", "oraz", "czyli", "więc", "and", "also", "so", "then", "but", "or")
OPENING_PHRASES = ("what about", "how about", "a co z", "a jak", "co z", "a czy")
# ("on" and "one", Polish "he" and "they", are left out: they are everyday English words.)
PRONOUNS = frozenset(
    """
it its it's they them their theirs this these those he him his she her hers
ona ono oni go jego jej ich nim niego niej nią niemu nich jemu im tym tego tej tych tę
""".split()
)
# Words that ask rather than name: a question made only of these (and pronouns) names nothing.
QUESTION_WORDS = frozenset(
    """
what which who whom whose when where why how is are was were do does did can could would should
the a an of in on at to for about and or so tell me more explain please summarize summarise describe
co czy jak jaki jaka jakie jakim jakich kto kiedy gdzie dlaczego czemu ile który która które
którym którego której kogo komu kim czego czym jakiego jakiej jakimi ilu którą których którzy
w we na o z do dla od po jest są był była było były to tak a i ten ta
więcej powiedz wyjaśnij proszę streść podsumuj opisz
""".split()
)


def names(question: str) -> list[str]:
    """The question's names: words with a capital after their first letter or capitalized after
    the question's first word (RoPE, GPT, Mixtral), or with a digit (GPT-3, 2017); "I" is not."""
    tokens = _TOKEN.findall(question)
    return [
        t
        for i, t in enumerate(tokens)
        if t != "I"
        and (any(ch.isdigit() for ch in t) or any(ch.isupper() for ch in t[1:]) or (i > 0 and t[0].isupper()))
    ]


def only_names(question: str, stopwords: frozenset[str]) -> list[str]:
    """The question's names when it asks about nothing else ("Czym jest RoPE?", "What is BPE?"):
    its other words are all question words or `stopwords`; [] otherwise."""
    found = names(question)
    named = {w for n in found for w in lowercase_words(n)}
    rest = [w for w in lowercase_words(question) if w not in named and w not in QUESTION_WORDS]
    return found if found and all(w in stopwords for w in rest) else []


def is_follow_up(question: str) -> bool:
    """True when `question` needs the conversation before it to mean anything (see above)."""
    ws = lowercase_words(question)
    if not ws:
        return True
    text = " ".join(ws)
    if ws[0] in OPENERS or text.startswith(OPENING_PHRASES):
        return True
    if PRONOUNS.intersection(ws) or (len(ws) <= MAX_ELLIPTIC_WORDS and not names(question)):
        return True
    return all(w in QUESTION_WORDS or w in PRONOUNS for w in ws)


def retrieval_refuses(found, threshold: float | None) -> bool:
    """Retrieval's own refusal, before any model reads the notes: `found` (a search result, or
    what a turn or an eval keeps of one: `top_cosine`, `unknown_names`, `unknown_words`,
    `names_in_top`) names something no note mentions, is mostly words no note holds, or is under
    the cosine `threshold` (unless it asks only about names the top passage holds)."""
    under = (
        threshold is not None
        and found.top_cosine is not None
        and found.top_cosine < threshold
        and not found.names_in_top
    )
    return bool(found.unknown_names or found.unknown_words or under)
