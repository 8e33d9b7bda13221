"""The CPU Transformer blocks compute torch's nn.TransformerEncoder, load its checkpoints,
start from the same weights for a seed, and drop out as dropout should."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from genrecsys.models.blocks import Encoder, attention_bias, dropout


def _torch_encoder(d: int, heads: int, layers: int, p: float, norm_first: bool) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=p, activation="gelu",
                                       batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def _torch_mask(pad: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    B, L = pad.shape
    blocked = pad[:, None, :].expand(B, L, L)
    if causal:
        blocked = blocked | torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
    blocked = blocked & ~torch.eye(L, dtype=torch.bool)
    return blocked.repeat_interleave(heads, dim=0)


@pytest.mark.parametrize("norm_first,causal", [(True, True), (False, False), (True, False)])
def test_same_function_and_state_dict_as_torch_encoder(norm_first, causal):
    torch.manual_seed(0)
    ref = _torch_encoder(16, 2, 2, 0.3, norm_first).eval()
    torch.manual_seed(0)
    ours = Encoder(16, 2, 2, 0.3, norm_first=norm_first).eval()
    # Same keys, and the same initial weights for the same seed (copies of one layer, as torch makes them).
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert ref_state.keys() == our_state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], our_state[k]), k
    # Trained weights differ per layer; a torch checkpoint loads and computes the same function.
    with torch.no_grad():
        for prm in ref.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, :4] = True
    pad[1, :6] = True  # one real item
    with torch.no_grad():
        want = ref(x, mask=_torch_mask(pad, 2, causal))
        got = ours(x, attention_bias(pad, causal))
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_attention_bias_blocks_padding_and_future_but_never_a_whole_row():
    pad = torch.tensor([[True, True, False, False]])
    bias = attention_bias(pad)  # (1, 1, 4, 4)
    assert bias.shape == (1, 1, 4, 4)
    allowed = torch.isfinite(bias[0, 0])
    assert allowed.any(-1).all()  # every query keeps at least itself
    assert allowed[3].tolist() == [False, False, True, True]  # last query: not the padding, not the future
    assert allowed[2].tolist() == [False, False, True, False]
    assert not allowed[0, 1] and allowed[0, 0]  # padded query attends to itself only
    assert torch.isfinite(attention_bias(pad, causal=False)[0, 0, 2]).tolist() == [False, False, True, True]


def test_dropout_rate_scale_gradient_and_eval_identity():
    torch.manual_seed(1)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # gradient flows through kept elements only, scaled the same
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert dropout(x, 0.25, training=False) is x
    assert dropout(x, 0.0, training=True) is x


def test_training_mode_draws_fresh_masks():
    torch.manual_seed(2)
    enc = Encoder(8, 2, 1, 0.5).train()
    x = torch.randn(2, 5, 8)
    bias = attention_bias(torch.zeros(2, 5, dtype=torch.bool))
    assert not torch.allclose(enc(x, bias), enc(x, bias))
    enc.eval()
    assert torch.equal(enc(x, bias), enc(x, bias))


def test_torch_impl_holds_the_same_parameters_and_computes_the_same_function():
    torch.manual_seed(3)
    cpu = Encoder(16, 4, 2, 0.1, impl="cpu").eval()
    torch.manual_seed(3)
    ref = Encoder(16, 4, 2, 0.1, impl="torch").eval()
    for (k1, v1), (k2, v2) in zip(cpu.state_dict().items(), ref.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(2, 6, 16)
    pad = torch.tensor([[True, True, False, False, False, False], [False] * 6])
    with torch.no_grad():
        assert torch.allclose(cpu(x, attention_bias(pad)), ref(x, attention_bias(pad)), atol=1e-5)
    with pytest.raises(ValueError, match="impl"):
        Encoder(16, 4, 2, 0.1, impl="cuda")


def test_models_refuse_an_unknown_encoder_impl():
    from genrecsys.errors import GenrecsysError
    from genrecsys.models.bert4rec import BERT4RecConfig
    from genrecsys.models.duorec import DuoRecConfig
    from genrecsys.models.sasrec import SASRecConfig

    for cfg in (SASRecConfig, BERT4RecConfig, DuoRecConfig):
        with pytest.raises(GenrecsysError, match="encoder_impl"):
            cfg(encoder_impl="flash")
