import pytest
import torch

from notes_rag.model.checkpoint import CheckpointError, load_model, write_checkpoint
from notes_rag.model.engine import KVCache, SamplingConfig, generate, generate_no_cache
from notes_rag.model.gpt import GPT, GPTConfig, preset


def test_kv_cache_matches_full_recompute(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 60))
    with torch.no_grad():
        full = tiny_model(x)
        cache = KVCache(tiny_model, batch_size=2)
        parts = [tiny_model(x[:, :25], kv_cache=cache), tiny_model(x[:, 25:40], kv_cache=cache)]
        parts += [tiny_model(x[:, i : i + 1], kv_cache=cache) for i in range(40, 60)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)


def test_greedy_cached_equals_uncached(tiny_model):
    prompt = [5, 17, 33, 2, 9]
    cached = list(generate(tiny_model, prompt, SamplingConfig(max_new_tokens=30)))
    assert cached == generate_no_cache(tiny_model, prompt, 30)


def test_causality(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (1, 40))
    y = x.clone()
    y[0, 30:] = (y[0, 30:] + 7) % tiny_model.config.vocab_size
    with torch.no_grad():
        a, b = tiny_model(x), tiny_model(y)
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


def test_grouped_query_attention_and_presets():
    cfg = GPTConfig(vocab_size=100, seq_len=32, n_layer=1, n_head=4, n_kv_head=2, n_embd=32)
    m = GPT(cfg)
    assert m(torch.randint(0, 100, (1, 8))).shape == (1, 8, 100)
    assert m.blocks[0].attn.c_qkv.weight.shape == ((4 + 2 * 2) * 8, 32)
    small = GPT(preset("small", vocab_size=8192))
    assert 3.0e6 < small.num_params() < 3.7e6
    with pytest.raises(ValueError, match="preset"):
        preset("huge")


def test_context_overflow_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="exceeds"):
        tiny_model(torch.zeros(1, tiny_model.config.seq_len + 1, dtype=torch.long))


def test_loss_ignores_minus_one(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (1, 10))
    y = x.clone()
    y[0, :5] = -1
    logits = tiny_model(x)
    ref = torch.nn.functional.cross_entropy(logits[0, 5:], x[0, 5:])
    torch.testing.assert_close(tiny_model(x, targets=y), ref)


def test_checkpoint_round_trip(tiny_model, tok, tmp_path):
    write_checkpoint(tmp_path / "ck", tiny_model, tok, meta={"stage": "test"})
    model, tok2, config = load_model(tmp_path / "ck")
    assert config["meta"]["stage"] == "test"
    assert tok2.fingerprint == tok.fingerprint
    x = torch.randint(0, tok.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny_model(x))


def test_checkpoint_errors(tiny_model, tok, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing")
    ck = tmp_path / "ck"
    write_checkpoint(ck, tiny_model, tok)
    weights = ck / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(ck)
    weights.write_bytes(data)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(ck)


def test_checkpoint_mismatch(tiny_model, tok, tmp_path):
    ck = tmp_path / "ck"
    other = GPT(preset("tiny", vocab_size=tok.vocab_size, n_embd=32))
    write_checkpoint(ck, other, tok)
    import json

    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["n_embd"] = 64  # config says 64, weights are 32 wide
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(ck)
    cfg["tokenizer"] = "0000"
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_model(ck)


def test_checkpoint_with_separate_q_and_kv_weights_loads_exactly(tiny_model, tok, tmp_path):
    from safetensors.torch import load_file, save_file

    write_checkpoint(tmp_path / "ck", tiny_model, tok)
    state = load_file(str(tmp_path / "ck" / "model.safetensors"))
    cfg = tiny_model.config
    q_rows = cfg.n_head * cfg.head_dim
    for name in [n for n in state if n.endswith("c_qkv.weight")]:  # the layout before fused QKV
        w = state.pop(name)
        state[name.replace("c_qkv", "c_q")], state[name.replace("c_qkv", "c_kv")] = w[:q_rows], w[q_rows:]
    save_file(state, str(tmp_path / "ck" / "model.safetensors"))
    (tmp_path / "ck" / "manifest.json").unlink()  # checkpoints of that layout predate manifests
    loaded, _, _ = load_model(tmp_path / "ck")
    x = torch.randint(0, cfg.vocab_size, (1, 12))
    torch.testing.assert_close(loaded(x), tiny_model.eval()(x), rtol=0, atol=0)


def test_old_reader_checkpoint_loads_and_becomes_a_generator(tok, tmp_path):
    """The release (and train-generator's usual start) is a reader checkpoint: it loads, even one
    saved before `read_pool` (2026-11-27), and its pointer heads are dropped for the copy head."""
    from safetensors.torch import load_file, save_file

    from notes_rag.train.generator import with_copy_head

    torch.manual_seed(0)
    reader = GPT(preset("tiny", vocab_size=tok.vocab_size, reader=True)).eval()
    torch.nn.init.normal_(reader.match_emb, std=0.5)
    write_checkpoint(tmp_path / "r", reader, tok, meta={"stage": "reader"})
    weights = tmp_path / "r" / "model.safetensors"
    state = load_file(str(weights))
    del state["read_pool.weight"]
    save_file(state, str(weights))
    (weights.parent / "manifest.json").unlink()  # checkpoints of that layout predate manifests
    loaded, _, config = load_model(tmp_path / "r")
    assert config["model"]["reader"] is True and not loaded.read_pool.weight.any()
    gen = with_copy_head(loaded).eval()
    assert gen.config.copy_head and not gen.config.reader and not hasattr(gen, "read_tok")
    assert torch.equal(gen.match_emb, reader.match_emb)
    x = torch.randint(0, tok.vocab_size, (1, 12))
    torch.testing.assert_close(gen(x), reader(x), rtol=0, atol=0)


def test_set_learning_freezes_all_but_the_named_weights(tok):
    from notes_rag.train.generator import set_learning, with_copy_head
    from notes_rag.train.loop import TrainConfig
    from notes_rag.train.optim import make_optimizer

    gen = with_copy_head(GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=64)))
    total = gen.num_params()
    head = set_learning(gen, "head")
    learning = {n for n, p in gen.named_parameters() if p.requires_grad}
    assert learning and all(n.startswith("copy.") or n.endswith("_emb") for n in learning)
    opt = make_optimizer(gen, TrainConfig())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == head
    top = set_learning(gen, "top")
    assert head < top < total and set_learning(gen, "all") == total
