"""CFGAN (Chae et al., "CFGAN: A Generic Collaborative Filtering Framework based on
Generative Adversarial Networks", CIKM'18): a vector-wise GAN whose generator writes a
user's whole purchase vector.

G(c_u) maps the user's condition c_u (their own 0/1 training row, as in the paper) to a
real-valued vector r_u over the catalog; D(x, c_u) tells the real row e_u from a generated
one, both read next to the condition. G takes no noise: the paper drops z because it wants
the single most plausible vector per user, and a deterministic G is what we score with.

The fake sample D sees is r_u masked by the real purchases, r_u * e_u: a plain GAN over
0/1 rows would let G win by writing 1 everywhere (then D could tell nothing from the
purchased entries, and every item would score alike). The paper's two fixes, on items
sampled afresh for every update among those the user has not bought:

- ZR, zero reconstruction: alpha * sum_{j in N_u^ZR} r_uj^2 added to G's loss, pulling G's
  output toward 0 on a fraction `s_zr` of the unpurchased items;
- PM, partial masking: a fraction `s_pm` of the unpurchased items is left unmasked in the
  fake sample, r_u * (e_u + k_u), so D sees G's mass there and penalises it (the real
  sample has 0s there).

`scheme` picks "zr", "pm" or "zp" (both; the paper's best). The losses are the paper's,
with the non-saturating generator loss (below):

    J_D = -log D(e_u | c_u) - log(1 - D(r_u * (e_u + k_u) | c_u))
    J_G = -log D(r_u * (e_u + k_u) | c_u) + alpha * sum_{j in N_u^ZR} r_uj^2

G and D are MLPs with sigmoid hidden layers (the paper's) and a sigmoid output; the
scores are G's pre-sigmoid logits, the same ranking as r_u without the ties of a
saturated sigmoid. At scoring time c_u is the user's training row plus the items of the
sequence the evaluator passes (at test time that adds the validation item).

Two optimizers, one loop. The shared loop steps one optimizer on the loss `loss()` returns,
so `make_optimizer` returns the generator's Adam (generator parameters only) and builds
the discriminator's Adam on the side; `loss()` first runs `d_steps` discriminator updates
itself, then returns G's loss for the loop to step. D's parameters also receive gradients
from G's backward (G's loss goes through D); they are zeroed before each D update and D's
optimizer is never stepped by the loop, so they do not leak into D.

Resuming: the loop checkpoints the generator's optimizer; the discriminator's Adam state
travels in the module's state (`get_extra_state`), so a resumed run continues exactly
(the ZR/PM samples come from torch's RNG, which the loop checkpoints too) and a saved
model carries its discriminator's moments. A state loaded before `make_optimizer` is
applied when the optimizer is built.

Training instabilities met and handled:

- log(0): D's sigmoid is folded into BCE-with-logits, never log(sigmoid(x)) by hand.
- Saturating G: with the minimax loss log(1 - D(fake)) G's gradient vanishes once D is
  confident; G minimises -log D(fake) instead (Goodfellow et al.'s non-saturating loss),
  the same fixed point.
- D overpowering G: one D update per G update by default (`d_steps`), D's gradient norm
  clipped at 5 (`d_clip`), and one-sided label smoothing available (`real_label` < 1
  gives D a target below 1 for real rows, so its logits stay finite and G keeps a
  gradient; off by default: 0.9 was no better on ML-100K validation).
- The all-ones collapse (G writes 1 on every item, D cannot object): ZR and PM above,
  which is why the paper introduced them; G conditioned on c_u also ties each output to
  one user, so it cannot collapse onto one vector for all users without D noticing.
- GAN losses do not fall monotonically, so the loop's early stopping on validation
  NDCG@10 and its best-checkpoint restore decide when to stop, not the loss.

Met but not solved (ML-100K, LOO, seed 2020): D wins early by the mass G leaves on the
PM-sampled items (the real row has 0s there), its sigmoid hidden units saturate, and the
gradient it sends to G's purchased entries is ~1e-5 and of random sign; G first suppresses
everything (ZR agrees), then raises its purchased entries only slowly (mean output there
0.12 -> 0.15 over 60 epochs at lr 1e-4), so under patience 10 G stays close to a
popularity ranking. lr 1e-3 oscillates (valid NDCG@10 0.036 -> 0.006 -> 0.029 within 15
epochs); a faster D (d_lr 1e-3), LeakyReLU hidden layers in D or G, a smaller alpha
(0.01, 0.001) and label smoothing 0.9 were no better on validation, so the paper's
sigmoid MLPs, lr 1e-4 and batch 32 stay the defaults. The paper trains for ~1000 epochs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import InteractionRows, user_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender

SCHEMES = ("zr", "pm", "zp")


@dataclass
class CFGANConfig:
    g_hidden: tuple[int, ...] = (400,)  # generator hidden layers
    d_hidden: tuple[int, ...] = (400,)  # discriminator hidden layers
    scheme: str = "zp"  # "zr" | "pm" | "zp" (both)
    s_zr: float = 0.7  # fraction of each user's unpurchased items drawn for zero reconstruction
    s_pm: float = 0.7  # fraction drawn for partial masking
    alpha: float = 0.1  # weight of the ZR term
    d_steps: int = 1  # discriminator updates per generator update
    d_lr: float | None = None  # None: the generator's learning rate
    real_label: float = 1.0  # D's target for real rows; < 1 is one-sided label smoothing
    d_clip: float | None = 5.0  # max gradient norm of a discriminator update; None: no clipping

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise GenrecsysError(f"cfgan: scheme must be one of {', '.join(SCHEMES)}, not {self.scheme!r}")
        if not (0.0 <= self.s_zr <= 1.0 and 0.0 <= self.s_pm <= 1.0):
            raise GenrecsysError("cfgan: s_zr and s_pm are fractions in [0, 1]")
        if self.d_steps < 1 or not 0.0 < self.real_label <= 1.0:
            raise GenrecsysError("cfgan: d_steps >= 1 and 0 < real_label <= 1 are required")


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with sigmoid between them (the paper's), no activation on the output:
    the callers apply the output sigmoid (G) or fold it into the loss (D)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def sample_unpurchased(real: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, I+1) 0/1 rows -> (B, I+1) 0/1 mask of about `fraction` of each row's unpurchased
    items, drawn independently per entry (never column 0, the padding).

    >>> sample_unpurchased(torch.tensor([[0., 1., 0., 0.]]), 1.0).tolist()
    [[0.0, 0.0, 1.0, 1.0]]
    """
    mask = (torch.rand_like(real) < fraction) & (real == 0)
    mask[:, 0] = False
    return mask.to(real.dtype)


def fake_vector(generated: torch.Tensor, real: torch.Tensor, pm: torch.Tensor) -> torch.Tensor:
    """The sample D judges as fake: G's output kept on the purchased items and on the
    PM-sampled ones, 0 elsewhere, r_u * (e_u + k_u). All (B, I+1).

    >>> fake_vector(torch.tensor([[.5, .6, .7, .8]]), torch.tensor([[0., 1., 0., 0.]]),
    ...             torch.tensor([[0., 0., 0., 1.]])).tolist()
    [[0.0, 0.6000000238418579, 0.0, 0.800000011920929]]
    """
    return generated * torch.clamp(real + pm, max=1.0)


class CFGAN(Recommender):
    Config = CFGANConfig
    default_lr = 1e-4  # the paper's; 1e-3 oscillates on ML-100K (see the module docstring)
    default_batch_size = 32  # the paper's
    default_weight_decay = 0.0

    def __init__(self, split: SplitData, config: CFGANConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        n = self.n_items + 1  # column 0 is padding: always 0 in the rows, never sampled
        self.generator = mlp([n, *c.g_hidden, n])  # c_u -> logits of r_u
        self.discriminator = mlp([2 * n, *c.d_hidden, 1])  # [x, c_u] -> logit of "real"
        self.rows = InteractionRows(split.train, self.n_items)
        self._d_optim: torch.optim.Optimizer | None = None
        self._pending_d_state: dict[str, Any] | None = None  # loaded before the optimizer existed

    # -- the two optimizers ---------------------------------------------------------------
    def make_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """The generator's Adam, for the loop; the discriminator's is kept on the module."""
        self._d_optim = torch.optim.Adam(self.discriminator.parameters(), lr=self.config.d_lr or lr,
                                         weight_decay=weight_decay)
        if self._pending_d_state is not None:
            self._d_optim.load_state_dict(self._pending_d_state)
            self._pending_d_state = None
        return torch.optim.Adam(self.generator.parameters(), lr=lr, weight_decay=weight_decay)

    def d_optimizer(self) -> torch.optim.Optimizer:
        if self._d_optim is None:  # loss() called outside `fit`: the model's own defaults
            self.make_optimizer(self.default_lr, self.default_weight_decay)
        assert self._d_optim is not None
        return self._d_optim

    def get_extra_state(self) -> dict[str, Any]:
        state = self._d_optim.state_dict() if self._d_optim is not None else self._pending_d_state
        return {"d_optim": state}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        d_state = state.get("d_optim")
        if d_state is not None and self._d_optim is not None:
            self._d_optim.load_state_dict(d_state)
        else:
            self._pending_d_state = d_state

    # -- training -------------------------------------------------------------------------
    def batches(self, split, batch_size, rng: np.random.Generator):
        return user_batches(split, batch_size, rng)

    def _judge(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """D's logit (B,) that the vector x (B, I+1) is a real row of the user c_u (B, I+1)."""
        return self.discriminator(torch.cat([x, cond], dim=1)).squeeze(1)

    def _pm(self, real: torch.Tensor) -> torch.Tensor:
        use = self.config.scheme in ("pm", "zp")
        return sample_unpurchased(real, self.config.s_pm) if use else torch.zeros_like(real)

    def discriminator_step(self, real: torch.Tensor) -> float:
        """One update of D on the rows `real` (B, I+1); returns its loss."""
        c = self.config
        opt = self.d_optimizer()
        with torch.no_grad():  # G is fixed here: no graph through it
            generated = torch.sigmoid(self.generator(real))  # (B, I+1)
        fake = fake_vector(generated, real, self._pm(real))
        d_real, d_fake = self._judge(real, real), self._judge(fake, real)  # (B,) each
        loss = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, c.real_label))
                + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        opt.zero_grad(set_to_none=True)  # also drops what G's last backward left on D
        loss.backward()
        if c.d_clip is not None:
            nn.utils.clip_grad_norm_(self.discriminator.parameters(), c.d_clip)
        opt.step()
        return float(loss.detach())

    def loss(self, batch):
        c = self.config
        real = self.rows.dense(batch["users"]).to(self.generator[0].weight.device)  # e_u = c_u, (B, I+1)
        for _ in range(c.d_steps):
            self.discriminator_step(real)
        generated = torch.sigmoid(self.generator(real))  # r_u, (B, I+1)
        d_fake = self._judge(fake_vector(generated, real, self._pm(real)), real)  # (B,)
        loss = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))  # non-saturating
        if c.scheme in ("zr", "zp"):
            zr = sample_unpurchased(real, c.s_zr)
            loss = loss + c.alpha * (generated.pow(2) * zr).sum(1).mean()
        return loss

    # -- scoring --------------------------------------------------------------------------
    def score(self, users, seqs):
        x = self.rows.dense(users, seqs).to(self.generator[0].weight.device)  # c_u, (B, I+1)
        logits = self.generator(x)  # sigmoid is monotone: rank by the logits, no saturated ties
        logits[:, 0] = -torch.inf
        return logits  # (B, I+1)
