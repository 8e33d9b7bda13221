"""DiffRec (Wang et al., "Diffusion Recommender Model", SIGIR'23): a user's whole
interaction vector is corrupted by a few steps of Gaussian noise and an MLP learns to
recover it; scoring runs the reverse process from the user's known row.

Forward process on x_0 = the user's 0/1 row: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
t = 0..T-1 (0-based: x_{-1} is x_0). The paper's schedule makes the *variance* 1 - abar_t
linear in t, from noise_scale * noise_min to noise_scale * noise_max, and derives
beta_t = 1 - abar_t / abar_{t-1}: recommendation wants little noise, so that the row keeps
enough of the user's taste to be recovered (images are noised to pure Gaussian instead).

The denoiser predicts x_0 (the paper's best mean type) from the L2-normalised, dropped-out
x_t and a timestep embedding. Its loss is the per-user MSE to x_0, weighted by
SNR(t-1) - SNR(t) (1 at t = 0), which is the ELBO's term for an x_0-predicting model, with
t drawn by importance sampling: p(t) ~ sqrt(E[L_t^2]) over the last 10 losses seen at each
t, uniform until every t has 10. That history is a persistent buffer, so a resumed run
samples as the interrupted one would have.

Scoring starts from the user's known row itself (noised for `sampling_steps` steps; the
paper's best is 0: no noise) and follows the posterior mean
mu(x_t, x_0_hat) = c1_t x_0_hat + c2_t x_t down to t = 0 without sampling noise, so scores
are deterministic. At t = 0 the mean is x_0_hat itself (c1 = 1, c2 = 0).

L-DiffRec (models/ldiffrec.py) runs the same `GaussianDiffusion` on VAE latents.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import InteractionRows, user_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender


@dataclass
class DiffRecConfig:
    # ML-100K validation NDCG@10 (seed 2020, lr 1e-3, batch 400): these defaults 0.0821; steps 20:
    # 0.0602; steps 10 / noise_scale 5e-3: 0.0722; steps 50 / 5e-3: 0.0441; lr 1e-4: 0.0407
    steps: int = 5  # T: diffusion steps of training and of the reverse process at scoring
    noise_scale: float = 1e-3
    noise_min: float = 5e-4  # 1 - abar runs linearly from noise_scale*noise_min ...
    noise_max: float = 5e-3  # ... to noise_scale*noise_max
    sampling_steps: int = 0  # forward steps applied to the known row before denoising at scoring
    hidden_sizes: tuple[int, ...] = (1000,)
    time_emb_size: int = 10
    dropout: float = 0.5  # on the normalised x_t, training only
    reweight: bool = True  # SNR weight + importance-sampled t (False: plain MSE, uniform t)
    history: int = 10  # losses kept per step for importance sampling

    def __post_init__(self) -> None:
        check_schedule(self.steps, self.noise_scale, self.noise_min, self.noise_max, self.sampling_steps)
        if not self.hidden_sizes or min(self.hidden_sizes) < 1 or self.time_emb_size < 1 or self.history < 1:
            raise GenrecsysError("diffrec: hidden_sizes non-empty and positive, time_emb_size >= 1, history >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise GenrecsysError("diffrec: dropout must be in [0, 1)")


def check_schedule(steps: int, noise_scale: float, noise_min: float, noise_max: float, sampling_steps: int) -> None:
    if steps < 1 or not 0 <= sampling_steps <= steps:
        raise GenrecsysError("diffusion: steps >= 1 and 0 <= sampling_steps <= steps are required")
    if noise_scale <= 0 or not 0 < noise_min <= noise_max or noise_scale * noise_max >= 1:
        raise GenrecsysError("diffusion: noise_scale > 0, 0 < noise_min <= noise_max, noise_scale*noise_max < 1")


def linear_variance_betas(steps: int, noise_scale: float, noise_min: float, noise_max: float,
                          max_beta: float = 0.999) -> np.ndarray:
    """(T,) float64 betas whose cumulative variance 1 - abar_t is linear in t.

    >>> b = linear_variance_betas(3, 0.1, 0.1, 0.3)  # 1 - abar = 0.01, 0.02, 0.03
    >>> np.round(1 - np.cumprod(1 - b), 6).tolist()
    [0.01, 0.02, 0.03]
    """
    variance = noise_scale * np.linspace(noise_min, noise_max, steps, dtype=np.float64)  # 1 - abar_t
    abar = 1.0 - variance
    betas = np.empty(steps)
    betas[0] = variance[0]
    betas[1:] = 1.0 - abar[1:] / abar[:-1]
    return np.minimum(betas, max_beta)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) steps -> (B, dim) sinusoidal features (cos half, then sin half), as in DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb  # (B, dim)


def init_linear(layer: nn.Linear) -> None:
    """The official code's init: Xavier-normal weights, N(0, 0.001) biases (as Mult-VAE)."""
    nn.init.xavier_normal_(layer.weight)
    nn.init.normal_(layer.bias, std=0.001)


class Denoiser(nn.Module):
    """x_t (B, D) and t (B,) -> x_0_hat (B, D): an MLP over [normalise+dropout(x_t), emb(t)]
    with tanh between layers and a linear output (a 0/1 row, or a latent, is regressed)."""

    def __init__(self, size: int, hidden_sizes: tuple[int, ...], time_emb_size: int, dropout: float,
                 normalize: bool = True) -> None:
        super().__init__()
        self.time_emb_size = time_emb_size
        self.dropout = dropout
        self.normalize = normalize
        self.time_proj = nn.Linear(time_emb_size, time_emb_size)
        sizes = [size + time_emb_size, *hidden_sizes, size]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        for layer in (self.time_proj, *self.layers):
            init_linear(layer)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_proj(timestep_embedding(t, self.time_emb_size))  # (B, E)
        if self.normalize:  # a row's scale is its length; the model should read its pattern
            x = F.normalize(x, dim=1)
        h = torch.cat([F.dropout(x, self.dropout, self.training), emb], dim=1)  # (B, D+E)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h  # (B, D)


class GaussianDiffusion(nn.Module):
    """The schedule, the forward process, the weighted loss with importance-sampled steps
    and the deterministic reverse process, for any denoiser predicting x_0.

    Schedule tensors are non-persistent buffers (recomputed from the config, moved with
    the model); the loss history is persistent.
    """

    uniform_floor = 1e-3  # probability mass spread uniformly over t once importance sampling starts

    def __init__(self, steps: int, noise_scale: float, noise_min: float, noise_max: float, history: int = 10) -> None:
        super().__init__()
        self.steps = steps
        betas = linear_variance_betas(steps, noise_scale, noise_min, noise_max)
        abar = np.cumprod(1.0 - betas)  # (T,)
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        snr = abar / (1.0 - abar)
        table = {
            "betas": betas,
            "abar": abar,
            "sqrt_abar": np.sqrt(abar),
            "sqrt_one_minus_abar": np.sqrt(1.0 - abar),
            "snr": snr,
            # posterior q(x_{t-1} | x_t, x_0) mean = c1 * x_0 + c2 * x_t (DDPM eq. 7)
            "posterior_c1": betas * np.sqrt(abar_prev) / (1.0 - abar),
            "posterior_c2": (1.0 - abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar),
            # ELBO weight of an x_0-predicting model's MSE at t; 1 at t = 0
            "weight": np.concatenate([[1.0], snr[:-1] - snr[1:]]),
        }
        for name, values in table.items():
            self.register_buffer(name, torch.as_tensor(values, dtype=torch.float32), persistent=False)
        self.register_buffer("loss_history", torch.zeros(steps, history))  # last `history` losses per t
        self.register_buffer("loss_count", torch.zeros(steps, dtype=torch.long))  # how many are filled

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) x_0, (B,) t -> (B, D) x_t ~ q(x_t | x_0)."""
        noise = torch.randn_like(x0) if noise is None else noise
        return self.sqrt_abar[t][:, None] * x0 + self.sqrt_one_minus_abar[t][:, None] * noise

    def sample_steps(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(t (n,), p(t) * T (n,)): importance-sampled once every step has a full loss
        history, uniform (p(t) * T = 1) before that."""
        device = self.loss_history.device
        if not bool((self.loss_count == self.loss_history.shape[1]).all()):
            return torch.randint(0, self.steps, (n,), device=device), torch.ones(n, device=device)
        p = self.loss_history.pow(2).mean(1).sqrt()  # (T,) RMS of recent losses
        p = p / p.sum() * (1.0 - self.uniform_floor) + self.uniform_floor / self.steps
        t = torch.multinomial(p, n, replacement=True)
        return t, p[t] * self.steps

    def record(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append per-example losses to their step's history, keeping the newest `history`
        (in batch order, as if appended one by one)."""
        cap = self.loss_history.shape[1]
        losses = losses.detach().float()
        for step in t.unique().tolist():
            n = int(self.loss_count[step])
            merged = torch.cat([self.loss_history[step, :n], losses[t == step]])[-cap:]
            self.loss_history[step, :len(merged)] = merged
            self.loss_count[step] = len(merged)

    def training_loss(self, denoiser: nn.Module, x0: torch.Tensor, reweight: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) x_0 -> (per-example loss (B,), x_0_hat (B, D)). The loss is the
        importance-weighted ELBO term: its mean is an unbiased estimate of the uniform
        average over t."""
        if reweight:
            t, pt = self.sample_steps(len(x0))
        else:
            t, pt = torch.randint(0, self.steps, (len(x0),), device=x0.device), x0.new_ones(len(x0))
        x0_hat = denoiser(self.q_sample(x0, t), t)
        mse = (x0_hat - x0).pow(2).mean(1)  # (B,)
        if not reweight:
            return mse, x0_hat
        loss = self.weight[t] * mse
        self.record(t, loss)
        return loss / pt, x0_hat

    @torch.no_grad()
    def denoise(self, denoiser: nn.Module, x0: torch.Tensor, sampling_steps: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Reverse process from a known x_0 (noised `sampling_steps` steps first), following
        the posterior mean without sampling noise: (B, D) -> (B, D)."""
        x = x0
        if sampling_steps > 0:
            t = torch.full((len(x0),), sampling_steps - 1, dtype=torch.long, device=x0.device)
            noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator else x0.device)
            x = self.q_sample(x0, t, noise.to(x0.device))
        for step in reversed(range(self.steps)):
            t = torch.full((len(x),), step, dtype=torch.long, device=x.device)
            x = self.posterior_c1[step] * denoiser(x, t) + self.posterior_c2[step] * x
        return x


class DiffRec(Recommender):
    Config = DiffRecConfig
    default_lr = 1e-3
    default_batch_size = 400
    default_weight_decay = 0.0

    def __init__(self, split: SplitData, config: DiffRecConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        n = self.n_items + 1  # column 0 is padding: 0 in every row, -inf in every score
        self.denoiser = Denoiser(n, tuple(c.hidden_sizes), c.time_emb_size, c.dropout)
        self.diffusion = GaussianDiffusion(c.steps, c.noise_scale, c.noise_min, c.noise_max, c.history)
        self.rows = InteractionRows(split.train, self.n_items)

    def batches(self, split, batch_size, rng: np.random.Generator):
        return user_batches(split, batch_size, rng)

    def loss(self, batch):
        x0 = self.rows.dense(batch["users"]).to(self.diffusion.abar.device)  # (B, I+1)
        loss, _ = self.diffusion.training_loss(self.denoiser, x0, self.config.reweight)
        return loss.mean()

    def score(self, users, seqs):
        x0 = self.rows.dense(users, seqs).to(self.diffusion.abar.device)  # training row + the sequence's items
        # a fixed seed: with sampling_steps > 0 the same inputs still get the same scores
        gen = torch.Generator().manual_seed(0) if self.config.sampling_steps else None
        scores = self.diffusion.denoise(self.denoiser, x0, self.config.sampling_steps, gen)  # (B, I+1)
        scores[:, 0] = -torch.inf
        return scores
