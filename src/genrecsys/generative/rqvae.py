"""TIGER's RQ-VAE (Rajput et al. 2023, §3.1): semantic IDs from a residual-quantised autoencoder.

    z = E(x)                                       MLP encoder, (N, D) -> (N, d_z)
    r_0 = z,  c_l = argmin_k ||r_l - e^l_k||,  r_l+1 = r_l - e^l_c_l      one codebook per level
    x_hat = Dec(z + sg[z_q - z]),  z_q = sum_l e^l_c_l                    straight-through estimator
    loss = ||x - x_hat||^2 + sum_l ||sg[r_l] - e^l_c_l||^2 + beta ||r_l - sg[e^l_c_l]||^2

The codebook term pulls each chosen code towards its residual; the commitment term (beta
0.25) keeps the encoder close to its codes. Codebooks start as residual k-means of the
untrained encoder's latents (TIGER: k-means on the first batch, against codebook collapse;
here the batch is the whole catalog), and a code that no item chose in an epoch is moved
to a random residual of its level (dead-code reset), so codebooks stay in use.

Full-batch Adam for a fixed number of epochs on one thread with a forked, seeded RNG: the
same vectors and config give the same codes, and the caller's RNG state is untouched.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np

from genrecsys.generative.quantize import QuantizeConfig, Quantized, residual_kmeans, squared_error

if TYPE_CHECKING:
    import torch


def train_rqvae(x: np.ndarray, config: QuantizeConfig, k: int) -> Quantized:
    """(N, D) item vectors -> codes (N, levels), the decoder's reconstruction, diagnostics.

    The vectors are centred and scaled to unit per-dimension variance for training (so one
    learning rate serves unit-norm text vectors and raw CF embeddings alike); the
    reconstruction is returned in the input's units.
    """
    import torch
    import torch.nn.functional as F

    c = config
    mean = x.mean(0, keepdims=True)  # (1, D)
    scale = float(np.sqrt(((x - mean) ** 2).mean())) or 1.0
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        gen = torch.Generator().manual_seed(c.seed)  # dead-code resets
        data = torch.as_tensor((x - mean) / scale, dtype=torch.float32)  # (N, D)
        enc = mlp([x.shape[1], *c.hidden, c.latent_dim])
        dec = mlp([c.latent_dim, *reversed(c.hidden), x.shape[1]])
        with torch.no_grad():
            z0 = enc(data).numpy()  # (N, d_z)
        init = residual_kmeans(z0, c.levels, k, seed=c.seed, iters=c.kmeans_iters).centroids
        codebooks = [torch.nn.Parameter(torch.as_tensor(cent)) for cent in init]  # (K_l, d_z) each
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *codebooks], lr=c.lr)
        resets = 0
        for _ in range(c.epochs):
            z = enc(data)  # (N, d_z)
            residuals, chosen, codes = residual_quantize(z, codebooks)
            z_q = torch.stack(chosen).sum(0)  # (N, d_z)
            x_hat = dec(z + (z_q - z).detach())  # straight-through: the decoder's gradient reaches the encoder
            recon = F.mse_loss(x_hat, data)
            quant = sum(F.mse_loss(e, r.detach()) + c.beta * F.mse_loss(r, e.detach())  # codebook + commitment
                        for r, e in zip(residuals, chosen))
            opt.zero_grad()
            (recon + quant).backward()
            opt.step()
            resets += reset_dead_codes(codebooks, codes, residuals, opt, gen)
        with torch.no_grad():
            z = enc(data)
            _, chosen, codes = residual_quantize(z, codebooks)
            partial = torch.cumsum(torch.stack(chosen), 0)  # (L, N, d_z): z_q after levels 0..l
            rebuilt = [dec(p).numpy() * scale + mean for p in partial]  # (N, D) each
    extra = {"epochs": c.epochs, "dead_code_resets": resets, "final_recon_loss": recon.item(),
             "final_quant_loss": quant.item()}
    return Quantized(codes.numpy().astype(np.int64), rebuilt[-1], [squared_error(x, r) for r in rebuilt], extra)


def residual_quantize(z: "torch.Tensor", codebooks: list) -> tuple[list, list, "torch.Tensor"]:
    """(N, d_z) latents -> (residual r_l per level, chosen code vector e_l per level, (N, L) codes).

    ``r_l`` carries the encoder's gradient, ``e_l`` its codebook's; r_l+1 = r_l - sg[e_l], so
    each level's codebook learns only from its own term.
    """
    import torch

    r, residuals, chosen, codes = z, [], [], []
    for cb in codebooks:  # (K, d_z)
        with torch.no_grad():
            d2 = (r * r).sum(1, keepdim=True) - 2 * r @ cb.T + (cb * cb).sum(1)  # (N, K)
            idx = d2.argmin(1)  # (N,)
        e = cb[idx]  # (N, d_z)
        residuals.append(r)
        chosen.append(e)
        codes.append(idx)
        r = r - e.detach()
    return residuals, chosen, torch.stack(codes, 1)


def reset_dead_codes(codebooks: list, codes: "torch.Tensor", residuals: list, opt, gen) -> int:
    """Move every code no item chose to a random residual of its level (and clear its Adam
    moments, which would otherwise carry it back); returns how many were moved."""
    import torch

    moved = 0
    with torch.no_grad():
        for level, cb in enumerate(codebooks):
            dead = torch.bincount(codes[:, level], minlength=len(cb)) == 0  # (K,)
            n = int(dead.sum())
            if not n:
                continue
            r = residuals[level].detach()  # (N, d_z)
            cb[dead] = r[torch.randint(len(r), (n,), generator=gen)]
            for moment in opt.state.get(cb, {}).values():
                if moment.shape == cb.shape:
                    moment[dead] = 0
            moved += n
    return moved


def mlp(dims: list[int]):
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    from torch import nn

    layers: list = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(dims) - 2 else [])
    return nn.Sequential(*layers)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block, then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
