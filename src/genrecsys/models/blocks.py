"""Transformer encoder blocks for the sequence models (SASRec, DuoRec, BERT4Rec), written
for the CPU.

The function is torch's ``nn.TransformerEncoderLayer`` (GELU, pre- or post-norm) and the
parameter names are its own, so a checkpoint saved with ``nn.TransformerEncoder`` loads
unchanged and, in eval mode, gives the same outputs (a test checks both). What differs is
the cost of a training step on a CPU: torch draws every dropout mask with ``bernoulli_``,
which took ~18% of a SASRec step here, and its attention dropout sits inside
``multi_head_attention_forward`` where it cannot be replaced. Here each mask is
``rand_like(x) >= p`` (the same Bernoulli(1 - p) keep mask, about twice as fast to draw)
and attention is written out so its dropout uses the same masks: one 2-layer SASRec
forward + backward at batch 128 went from 108 to 76 ms on 2 cores
(``benchmarks/train_profile.py`` has the per-epoch figures).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    # Bernoulli(1 - p) keep mask, already scaled, built in place in one float buffer: cheaper
    # to draw than bernoulli_ on CPU, and a float mask spares the bool -> float copies.
    mask = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
    return x * mask


class Dropout(nn.Module):
    """``nn.Dropout`` with :func:`dropout`'s masks (no parameters, so state dicts are unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention_bias(pad: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """(B, L) padding flags -> (B, 1, L, L) additive attention bias: 0 allowed, -inf blocked.

    Keys that are padding are blocked (and, when ``causal``, later positions); every
    position may attend to itself, so a padded query row is never fully blocked (NaN).
    """
    B, L = pad.shape
    blocked = pad[:, None, :].expand(B, L, L)
    if causal:
        blocked = blocked | torch.triu(torch.ones(L, L, dtype=torch.bool, device=pad.device), diagonal=1)
    blocked = blocked & ~torch.eye(L, dtype=torch.bool, device=pad.device)
    bias = torch.zeros(B, 1, L, L, device=pad.device)
    return bias.masked_fill_(blocked[:, None], float("-inf"))


class EncoderLayer(nn.Module):
    """One Transformer encoder layer, ``nn.TransformerEncoderLayer(d, heads, 4 * d, dropout,
    activation="gelu", batch_first=True, norm_first=...)`` with the same parameters."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, norm_first: bool = True) -> None:
        super().__init__()
        self.n_heads, self.p, self.norm_first = n_heads, dropout, norm_first
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)  # holds in_proj / out_proj
        self.linear1 = nn.Linear(d_model, 4 * d_model)
        self.linear2 = nn.Linear(4 * d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def _attend(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """(B, L, D), (B, 1, L, L) -> (B, L, D) multi-head self-attention with dropout on its weights."""
        B, L, D = x.shape
        H = self.n_heads
        qkv = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias)  # (B, L, 3D)
        q, k, v = qkv.view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, D/H)
        weights = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(D // H)) + bias, dim=-1)  # (B, H, L, L)
        out = dropout(weights, self.p, self.training) @ v  # (B, H, L, D/H)
        out = self.self_attn.out_proj(out.transpose(1, 2).reshape(B, L, D))
        return dropout(out, self.p, self.training)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = dropout(F.gelu(self.linear1(x)), self.p, self.training)
        return dropout(self.linear2(h), self.p, self.training)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self._attend(self.norm1(x), bias)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._attend(x, bias))
        return self.norm2(x + self._feed_forward(x))


IMPLS = ("cpu", "torch")


class Encoder(nn.Module):
    """A stack of encoder layers (state-dict keys ``layers.<i>.*``, as ``nn.TransformerEncoder``).

    ``impl="cpu"``: :class:`EncoderLayer` (cheaper dropout masks, attention written out);
    ``impl="torch"``: ``nn.TransformerEncoderLayer`` itself, whose fused attention kernels
    are the better choice on a GPU. Both hold the same parameters, so a checkpoint loads
    into either.
    """

    def __init__(self, d_model: int, n_heads: int, n_layers: int, dropout: float, norm_first: bool = True,
                 impl: str = "cpu") -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"encoder impl must be one of {IMPLS}, got {impl!r}")
        self.impl, self.n_heads = impl, n_heads
        if impl == "cpu":
            layer: nn.Module = EncoderLayer(d_model, n_heads, dropout, norm_first)
        else:
            layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout,
                                               activation="gelu", batch_first=True, norm_first=norm_first)
        # Copies of one initialised layer, as nn.TransformerEncoder makes them: a seed gives
        # the same initial weights with either impl (and draws the same random numbers).
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """(B, L, D) inputs, (B, 1, L, L) attention bias -> (B, L, D)."""
        if self.impl == "torch":
            B, _, L, _ = bias.shape
            mask = bias.expand(B, self.n_heads, L, L).reshape(B * self.n_heads, L, L)  # float mask, per head
            for layer in self.layers:
                x = layer(x, src_mask=mask)
            return x
        for layer in self.layers:
            x = layer(x, bias)
        return x
