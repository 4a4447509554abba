"""Muon: the orthogonalization, training with it, exact resume, and no silent optimizer switch."""

import pytest
import torch
from safetensors.torch import load_file
from test_pretrain import corpus, tiny_cfg  # noqa: F401  (the corpus fixture is reused)

from notes_rag.model.checkpoint import CheckpointError
from notes_rag.train.muon import MuonAdamW, orthogonalize
from notes_rag.train.pretrain import pretrain


@pytest.mark.parametrize("shape", [(16, 64), (64, 16)])
def test_orthogonalize_flattens_the_singular_values(shape):
    torch.manual_seed(0)
    g = torch.randn(*shape) @ torch.diag(torch.logspace(-1, 1, shape[1]))  # 100x spread
    s = torch.linalg.svdvals(orthogonalize(g))
    assert s.min() > 0.5 and s.max() < 1.3  # pushed to roughly one


def test_muon_groups_reject_non_matrices():
    with pytest.raises(ValueError):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "muon": True}])


def test_pretrain_with_muon_learns_and_resumes_exactly(corpus, tmp_path, interrupt_at):  # noqa: F811
    full, part = tmp_path / "full", tmp_path / "part"
    result = pretrain([corpus], full, tiny_cfg(steps=12, optimizer="muon"))
    assert result["val_loss"] < 5.0  # log(320) = 5.77 is where an untrained model starts
    interrupt_at(7)
    with pytest.raises(KeyboardInterrupt):
        pretrain([corpus], part, tiny_cfg(steps=12, optimizer="muon"))
    with pytest.raises(CheckpointError, match="optimizer muon"):
        pretrain([corpus], part, tiny_cfg(steps=12), resume=True)  # AdamW would silently differ
    pretrain([corpus], part, tiny_cfg(steps=12, optimizer="muon"), resume=True)
    a = load_file(str(full / "last" / "model.safetensors"))
    b = load_file(str(part / "last" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
