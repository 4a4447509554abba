"""Abstention on the question as asked: follow-up detection, names the notes never mention, and
the quote chosen by meaning."""

from __future__ import annotations

import numpy as np
import pytest
from test_chat import FakeRetriever, _assistant
from tiny_encoder import build_tiny_index

from notes_rag.chat.format import ABSTAIN, is_abstention
from notes_rag.chat.quote import best_quote, candidates
from notes_rag.index.search import RetrievalConfig, Retriever, SearchResult
from notes_rag.question import is_follow_up, names, only_names


@pytest.mark.parametrize(
    "question, follow_up",
    [
        ("A w którym roku?", True),
        ("A Llama 3?", True),
        ("In which year?", True),
        ("Who proposed it?", True),
        ("Kiedy go opublikowano?", True),
        ("What about the decoder?", True),
        ("Dlaczego?", True),
        ("What is the capital of Australia?", False),
        ("Kto zaproponował model perceptronu?", False),
        ("What is RoPE?", False),  # short, but it names something of its own
        ("What does attention depend on?", False),
    ],
)
def test_follow_up_detection(question, follow_up):
    assert is_follow_up(question) is follow_up


def test_names_are_capitalized_inner_words_acronyms_and_numbers():
    assert names("Na czym polega metoda LoRA i jaki rank?") == ["LoRA"]
    assert names("Ile kosztował trening GPT-3 w 2020?") == ["GPT-3", "2020"]
    assert names("Which parameters do I need?") == []


NOTES = {
    "neuron.md": "# Neuron\n\nW 1943 McCulloch i Pitts proponują matematyczny model neuronu.\n",
    "rope.md": "# Pozycje\n\nRoPE obraca wektory zapytań i kluczy o kąt zależny od pozycji.\n",
}


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    index_dir, encoder = build_tiny_index(tmp_path_factory.mktemp("question-index"), NOTES)
    return Retriever(index_dir, encoder, RetrievalConfig())


def test_abstention_cosine_is_the_question_alone_unless_it_follows_up(retriever):
    first = "Kto zaproponował matematyczny model neuronu?"
    off_topic = "What is the capital of Australia?"
    alone = retriever.search(off_topic).top_cosine
    assert retriever.search_conversation([first, off_topic]).top_cosine == pytest.approx(alone)
    follow = "A w którym roku?"
    joined = retriever._dense([f"{first} {follow}"], 1)[0]
    own = retriever.search(follow).top_cosine
    expected = max(own, max(joined.values()))
    assert retriever.search_conversation([first, follow]).top_cosine == pytest.approx(expected)


def test_names_no_note_mentions_are_reported(retriever):
    assert retriever.search("Na czym polega metoda LoRA?").unknown_names == ("LoRA",)
    assert retriever.search("Czym jest RoPE?").unknown_names == ()
    assert retriever.search("Co zaproponowali McCulloch i Pitts?").unknown_names == ()


def test_a_question_most_of_whose_words_no_note_holds_is_off_topic(retriever):
    assert retriever.search("Jak ugotować rosół?").unknown_words == ("ugotować", "rosół")
    assert retriever.search("Kto zaproponował matematyczny model neuronu?").unknown_words == ()
    # one unknown word of four is a question about the notes in other words, not off-topic
    assert retriever.search("Kto proponuje matematyczny model kota?").unknown_words == ()
    assert retriever.search_conversation(["Kto zaproponował model neuronu?", "A kota?"]).unknown_words == ()
    off = Retriever(retriever.index_dir, retriever.encoder, RetrievalConfig(unknown_word_share=None))
    assert off.search("Jak ugotować rosół?").unknown_words == ()


class _OffTopic(FakeRetriever):
    def search_conversation(self, turns, k=5, mode="hybrid"):
        return SearchResult(self.hits[:k], 0.99, unknown_words=("ugotować", "rosół"))


def test_chat_abstains_on_an_off_topic_question_and_says_which_words(tiny_ckpt):  # noqa: F811
    ans = _assistant(tiny_ckpt, _OffTopic()).ask([], "Jak ugotować rosół?")
    assert ans.abstained and ans.answered_by == "abstain" and ans.abstain_reason == "retrieval"
    assert ans.text.startswith(ABSTAIN["pl"]) and "ugotować, rosół" in ans.text


class _Unknown(FakeRetriever):
    def search_conversation(self, turns, k=5, mode="hybrid"):
        return SearchResult(self.hits[:k], 0.99, ("LoRA",))


def test_chat_abstains_on_an_unknown_name_and_says_which(tiny_ckpt):  # noqa: F811
    ans = _assistant(tiny_ckpt, _Unknown()).ask([], "Na czym polega metoda LoRA?")
    assert ans.abstained and ans.answered_by == "abstain" and ans.abstain_reason == "retrieval"
    assert is_abstention(ans.text) and ans.text.startswith(ABSTAIN["pl"]) and "LoRA" in ans.text


def test_quote_is_chosen_by_meaning_over_shared_words():
    passage = (
        "# BPE\n\nBPE algorithm search for library complicated to implement.\n"
        "Unknown words are split into known subword units."
    )
    assert "Unknown words are split into known subword units." in candidates(passage, 2)
    assert any("\n" not in c and c.count(".") == 2 for c in candidates(passage, 2))  # a two-line window
    question = "What does BPE do with unknown words?"

    def meaning(q, texts):  # a stand-in encoder that knows which candidate answers
        return np.array([0.9 if t.startswith("Unknown") else 0.8 for t in texts])

    assert best_quote(question, [passage], meaning)[0].startswith("Unknown words are split")
    assert best_quote(question, [passage], None)[0].startswith("BPE algorithm")  # words alone
    assert best_quote(question, ["# Only a heading"], None) is None


def test_only_names_is_a_question_about_nothing_but_names():
    from notes_rag.index.lexical import STOPWORDS

    assert only_names("Czym jest RoPE?", STOPWORDS) == ["RoPE"]
    assert only_names("What is GPT-3?", STOPWORDS) == ["GPT-3"]
    assert only_names("Who created the Word2Vec algorithm?", STOPWORDS) == []  # asks about a creator
    assert only_names("What is love?", STOPWORDS) == []  # no name


def test_a_question_about_a_name_the_top_passage_holds_is_not_refused_on_cosine(retriever, tiny_ckpt):  # noqa: F811
    res = retriever.search("Czym jest RoPE?")
    assert res.hits[0].file == "rope.md" and res.names_in_top
    assert not retriever.search("Czym jest RoPE w praktyce?").names_in_top  # it asks about more
    a = _assistant(tiny_ckpt, retriever, abstain_threshold=0.9999)
    assert a.ask([], "Czym jest RoPE?").abstain_reason != "retrieval"
    assert a.ask([], "Kto zaproponował matematyczny model neuronu?").abstain_reason == "retrieval"


def test_quote_candidates_drop_list_markers_and_join_lines_readably():
    note = "* Koszty\n\t* GPT-3 - 5M USD\nTo jest zdanie które\nciągnie się dalej.\n1. punkt"
    got = candidates(note, 2)
    assert "Koszty · GPT-3 - 5M USD" in got  # list items: " · ", markers gone
    assert "To jest zdanie które ciągnie się dalej." in got  # a sentence over a line break: a space
    assert "1." not in got and "punkt" in got and not any(c.startswith(("*", "1.")) for c in got)


def test_similarity_reuses_the_searched_question_vector_exactly(retriever):
    texts = ["RoPE obraca wektory zapytań.", "Atencja miesza wartości."]
    retriever.search("Czym jest RoPE?")
    reused = retriever.similarity("Czym jest RoPE?", texts)
    retriever._last_queries.clear()
    assert np.allclose(reused, retriever.similarity("Czym jest RoPE?", texts), atol=1e-6)
