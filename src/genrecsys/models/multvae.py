"""Mult-VAE and Mult-DAE (Liang et al., "Variational Autoencoders for Collaborative
Filtering", WWW'18): a user's whole interaction vector in, a multinomial over the catalog
out.

Encoder [I -> 600 -> 200] and decoder [200 -> 600 -> I] with tanh, the input L2-normalised
and dropped out (p 0.5) during training; the loss is the multinomial log-likelihood
-sum_i x_ui log softmax(f(z_u))_i. Mult-VAE adds the KL term weighted by beta, annealed
linearly from 0 with the number of updates and capped (the paper's best cap: 0.2; the
step counter is a buffer, so a resumed run continues its schedule). Mult-DAE is the same
network with a deterministic code and an L2 penalty instead of the KL term.

At scoring time the input is the user's training row plus the items of the sequence the
evaluator passes (at test time that adds the validation item), as the paper folds in a
held-out user's known interactions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import InteractionRows, user_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender


@dataclass
class MultVAEConfig:
    hidden_size: int = 600
    latent_size: int = 200
    dropout: float = 0.5  # on the normalised input, training only
    anneal_cap: float = 0.2  # the largest KL weight beta
    anneal_steps: int = 2000  # updates over which beta rises 0 -> 1 (capped at anneal_cap)

    def __post_init__(self) -> None:
        _check_sizes(self.hidden_size, self.latent_size, self.dropout)
        if self.anneal_cap < 0 or self.anneal_steps < 1:
            raise GenrecsysError("multvae: anneal_cap >= 0 and anneal_steps >= 1 are required")


@dataclass
class MultDAEConfig:
    hidden_size: int = 600
    latent_size: int = 200
    dropout: float = 0.5

    def __post_init__(self) -> None:
        _check_sizes(self.hidden_size, self.latent_size, self.dropout)


def _check_sizes(hidden: int, latent: int, dropout: float) -> None:
    if hidden < 1 or latent < 1 or not 0.0 <= dropout < 1.0:
        raise GenrecsysError(f"multvae/multdae: hidden_size and latent_size >= 1 and dropout in [0, 1) are required; "
                             f"got {hidden}, {latent}, {dropout}")


class MultVAE(Recommender):
    Config = MultVAEConfig
    default_lr = 1e-3
    default_batch_size = 128
    default_weight_decay = 0.0
    variational = True

    def __init__(self, split: SplitData, config: MultVAEConfig | MultDAEConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        n = self.n_items + 1  # column 0 is padding: always 0 in, masked out of the softmax
        out = 2 * c.latent_size if self.variational else c.latent_size
        self.encoder = nn.Sequential(nn.Linear(n, c.hidden_size), nn.Tanh(), nn.Linear(c.hidden_size, out))
        self.decoder = nn.Sequential(nn.Linear(c.latent_size, c.hidden_size), nn.Tanh(), nn.Linear(c.hidden_size, n))
        for layer in (*self.encoder, *self.decoder):
            if isinstance(layer, nn.Linear):  # the paper's Xavier weights, N(0, 0.001) biases
                nn.init.xavier_normal_(layer.weight)
                nn.init.normal_(layer.bias, std=0.001)
        self.rows = InteractionRows(split.train, self.n_items)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def batches(self, split, batch_size, rng: np.random.Generator):
        return user_batches(split, batch_size, rng)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = F.dropout(F.normalize(x, dim=1), self.config.dropout, self.training)  # (B, I+1)
        h = self.encoder(h)
        if not self.variational:
            return torch.tanh(h), None  # the DAE's code, with the paper's tanh on every layer
        mu, logvar = h.chunk(2, dim=1)  # (B, Z) each
        return mu, logvar

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, I+1) rows -> (logits (B, I+1) with the padding column at -inf, KL (B,))."""
        mu, logvar = self._encode(x)
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)) if logvar is not None else mu.new_zeros(len(mu))
        logits = self.decoder(z)
        logits[:, 0] = -torch.inf
        return logits, kl

    def beta(self) -> float:
        c = self.config
        return min(c.anneal_cap, float(self.steps) / max(c.anneal_steps, 1))

    def loss(self, batch):
        x = self.rows.dense(batch["users"]).to(self.steps.device)  # (B, I+1)
        logits, kl = self._logits(x)
        nll = -(F.log_softmax(logits, dim=1)[:, 1:] * x[:, 1:]).sum(1)  # (B,)
        loss = nll.mean()
        if self.variational:
            loss = loss + self.beta() * kl.mean()
            self.steps += 1
        return loss

    def score(self, users, seqs):
        x = self.rows.dense(users, seqs).to(self.steps.device)
        return self._logits(x)[0]  # (B, I+1)


class MultDAE(MultVAE):
    Config = MultDAEConfig
    default_weight_decay = 1e-5  # the paper's L2 penalty on the weights (its lambda 0.01 over a summed loss)
    variational = False
