"""The unit reranker (model/unit_reranker.py): its input text, its numpy forward against
transformers', its weights file checks, and how it moves the first unit's prior.

On the tiny random encoder of tests/tiny_encoder.py: the fitted weights need the product's encoder,
which the tests never load.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.chat.turn_input import UnitView, unit_prior
from notes_rag.errors import NotesRagError
from notes_rag.index.bert_encoder import BertEncoder
from notes_rag.index.encoder_cache import encoder_id
from notes_rag.index.encoder_delta import layer_names, write_delta
from notes_rag.model import unit_reranker
from notes_rag.model.unit_reranker import TOP_K, UnitReranker, pair_text

UNITS = ["Positional embeddings", "Why do we need them?", "They are added to the token embeddings.", "Next topic"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def _fitted(tiny, tmp_path, layers=(1,), seed=0):
    """A reranker file over the tiny encoder: its `layers` perturbed, a random head."""
    from safetensors.numpy import load_file

    state = load_file(str(tiny / "model.safetensors"))
    prefix = "" if "embeddings.word_embeddings.weight" in state else "bert."
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    rng = np.random.default_rng(seed)
    tensors = {n: state[n] + rng.normal(0, 0.05, state[n].shape).astype(np.float32) for n in layer_names(layers, state)}
    hidden = state["embeddings.word_embeddings.weight"].shape[1]
    tensors["head.weight"] = rng.normal(0, 1, hidden).astype(np.float32)
    tensors["head.bias"] = np.array([0.5], np.float32)
    path = tmp_path / "unit-reranker.safetensors"
    write_delta(path, tensors, encoder_id(tiny), {"fitted_on": "test"})
    return path, tensors


def test_pair_text_reads_the_title_the_line_before_and_the_unit():
    assert pair_text("q?", UNITS, 0) == "query: q? passage: » Positional embeddings"
    # the title is the line before: said once
    assert pair_text("q?", UNITS, 1) == "query: q? passage: Positional embeddings » Why do we need them?"
    two = pair_text("q?", UNITS, 2)
    assert two == (
        "query: q? passage: Positional embeddings … Why do we need them? » They are added to the token embeddings."
    )
    long_unit = pair_text("q?", ["word " * 200], 0)
    assert len(long_unit.split()) == 4 + 60  # a unit is cut at 60 words


def test_numpy_scores_equal_transformers(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    path, tensors = _fitted(tiny, tmp_path)
    reranker = unit_reranker.load(BertEncoder(tiny), path)
    units = [UNITS, ["Attention is quadratic in the sequence length.", "Uwaga kosztuje O(n²)."]]
    picks = [(0, 2), (1, 0), (0, 0), (1, 1)]
    ours = reranker.scores("How are positional embeddings combined?", units, picks)

    model = AutoModel.from_pretrained(str(tiny))
    fp16 = {n: torch.tensor(v.astype(np.float16).astype(np.float32)) for n, v in tensors.items()}
    model.load_state_dict({n: v for n, v in fp16.items() if n.startswith("encoder.")}, strict=False)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    texts = [pair_text("How are positional embeddings combined?", units[p], i) for p, i in picks]
    batch = tok(texts, padding=True, truncation=True, max_length=reranker.encoder.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        ref = ((h * m).sum(1) / m.sum(1)) @ fp16["head.weight"] + fp16["head.bias"]
    assert np.allclose(ours, ref.numpy(), atol=1e-4)
    # the twin computes with the new layers; the query encoder it came from is untouched
    base = BertEncoder(tiny)
    assert not np.allclose(base.encode(texts), reranker.encoder.encode(texts))


def test_damaged_or_foreign_weights_are_refused(tiny, tmp_path):
    path, _ = _fitted(tiny, tmp_path)
    encoder = BertEncoder(tiny)
    assert unit_reranker.for_encoder(encoder, "some-other-encoder-0123456789abcdef", path) is None
    assert unit_reranker.for_encoder(object(), encoder_id(tiny), path) is None  # not the numpy encoder
    assert isinstance(unit_reranker.for_encoder(encoder, encoder_id(tiny), path), UnitReranker)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NotesRagError, match="unit reranker .* is corrupt"):
        unit_reranker.load(encoder, path)


def test_weights_for_another_shape_are_one_error(tiny, tmp_path):
    path = tmp_path / "bad.safetensors"
    write_delta(path, {"encoder.layer.0.output.dense.weight": np.zeros((3, 3), np.float32),
                       "head.weight": np.zeros(3, np.float32), "head.bias": np.zeros(1, np.float32)},
                encoder_id(tiny), {})  # fmt: skip
    with pytest.raises(NotesRagError, match="does not fit the encoder"):
        unit_reranker.load(BertEncoder(tiny), path)


def test_env_turns_it_off_or_names_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv(unit_reranker.ENV, "none")
    assert unit_reranker.release_file() is None
    monkeypatch.setenv(unit_reranker.ENV, str(tmp_path / "missing.safetensors"))
    with pytest.raises(NotesRagError, match="no such unit reranker"):
        unit_reranker.release_file()


class _Says:
    """A reranker double: scores the units it is shown by a table, and records what it was shown."""

    def __init__(self, table: dict[tuple[int, int], float]):
        self.table, self.shown = table, []

    def scores(self, query, units, picks):
        self.shown.append(list(picks))
        return np.array([self.table.get(p, 0.0) for p in picks], np.float32)


def _view(n_units: int) -> UnitView:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(n_units, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = vectors[0].copy()
    units = [[f"line number {i} about attention" for i in range(n_units)]]
    return UnitView(units, q, vectors, [list((vectors @ q).astype(float))])


def test_the_reranker_moves_the_first_unit_among_the_scorers_top():
    view = _view(12)
    alone = np.array(unit_prior(view, "attention?")[0])
    order = list(np.argsort(-alone, kind="stable"))
    pick = int(order[3])  # fourth by the scorer: inside the reranker's top K
    says = _Says({(0, pick): 50.0})
    joint = np.array(unit_prior(view, "attention?", says)[0])
    assert int(np.argmax(joint)) == pick
    assert sorted(says.shown[0]) == sorted((0, int(k)) for k in order[:TOP_K])
    assert np.isclose(np.exp(joint).sum(), 1.0)
    # a unit outside the scorer's top K is never shown to it and keeps its place below the shown ones' lowest
    outside = int(order[-1])
    assert (0, outside) not in says.shown[0]
    assert joint[outside] - alone[outside] == pytest.approx(min(joint[k] - alone[k] for k in order[:TOP_K]), abs=1e-9)


def test_assistant_has_no_reranker_for_test_doubles_or_when_off():
    from notes_rag.chat.assistant import AnswerConfig, Assistant

    a = Assistant(retriever=object(), model=None, tok=None)
    assert a.reranker() is None
    off = Assistant(retriever=object(), model=None, tok=None, cfg=AnswerConfig(unit_reranker=False))
    assert off.reranker() is None


def test_assistant_loads_the_reranker_fitted_for_its_encoder(tiny, tmp_path, monkeypatch):
    from notes_rag.chat.assistant import Assistant

    path, _ = _fitted(tiny, tmp_path)
    monkeypatch.setenv(unit_reranker.ENV, str(path))

    class Retriever:
        encoder = BertEncoder(tiny)
        meta = {"encoder": encoder_id(tiny)}

    a = Assistant(retriever=Retriever(), model=None, tok=None)
    assert isinstance(a.reranker(), UnitReranker) and a.reranker() is a.reranker()  # loaded once
    Retriever.meta = {"encoder": "another-encoder-0123456789abcdef"}
    assert Assistant(retriever=Retriever(), model=None, tok=None).reranker() is None


def test_a_chat_turn_consults_the_reranker(tok, tmp_path):
    """Each turn the reranker is shown the question (a follow-up's with the one before it) and
    the scorer's top units; the turn streams its answer as without it."""
    from tiny_chat import write_tiny_checkpoint

    from notes_rag.chat.assistant import AnswerConfig, Assistant
    from notes_rag.chat.format import Turn
    from notes_rag.index.search import Hit, SearchResult
    from notes_rag.model.checkpoint import load_model

    notes = ["Token to kawałek tekstu.\nEmbedding to wektor liczb.", "Uwaga liczy podobieństwo zapytań do kluczy."]

    class Searcher:
        index_dir = tmp_path
        abstain_threshold = None

        def search_conversation(self, turns, k=5, mode="hybrid"):
            hits = [Hit(i, 1.0 / i, i, f"n{i}.md", 1, 3, ("Notes",), t) for i, t in enumerate(notes, 1)]
            return SearchResult(hits[:k], 0.9)

        def translations(self, query):
            return []

        def vectors(self, query, texts):
            cos = np.linspace(0.9, 0.8, len(texts))
            return np.array([1.0, 0.0]), np.stack([cos, np.sqrt(1 - cos**2)], axis=1)

    model, tok2, _ = load_model(write_tiny_checkpoint(tmp_path / "m", tok))
    says = _Says({})
    queries = []
    original = says.scores
    says.scores = lambda q, units, picks: queries.append(q) or original(q, units, picks)
    assistant = Assistant(Searcher(), model, tok2, AnswerConfig(max_new_tokens=24), "m", "i", [says])
    pieces = list(assistant.stream([], "Co to jest token?"))
    assert "".join(pieces[:-1]).strip() == pieces[-1].text
    assistant.ask([Turn("user", "Co to jest token?"), Turn("assistant", "Token [1]")], "A embedding?")
    assert queries == ["Co to jest token?", "Co to jest token? A embedding?"]
    assert len(says.shown[0]) == 3  # every worded unit read: fewer than TOP_K
