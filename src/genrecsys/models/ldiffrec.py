"""L-DiffRec (Wang et al., "Diffusion Recommender Model", SIGIR'23, §3.4): DiffRec in the
latent space of per-cluster VAEs, so that neither the denoiser nor the encoders ever see
a (B, I) layer over the whole catalog at once.

1. Items are clustered (k-means, `n_clusters` groups; the paper clusters LightGCN item
   embeddings, we cluster the items' rows of a truncated SVD of the training matrix, so
   the groups follow from the split alone). Both steps are seeded and deterministic; the
   assignment is also a persistent buffer, and a saved one wins on `load_state_dict`.
2. Cluster c's slice of the user's (L2-normalised, dropped-out) row is encoded to
   (mu_c, logvar_c) of size d_c, the latent budget `latent_size` split in proportion to
   cluster sizes; z = concat_c z_c.
3. `GaussianDiffusion` from models/diffrec.py runs on z: noise, denoise, the SNR-weighted
   importance-sampled loss (the same code as DiffRec, only the input differs).
4. Per-cluster decoders map the denoiser's z_0 estimate back to the cluster's items;
   the logits are scattered into catalog order for a multinomial likelihood.

Loss = lambda * diffusion + multinomial NLL + beta * KL, with beta rising from 0 to `kl_cap`
over `kl_steps` updates and lambda optionally decaying from `lamda` to `lamda_floor` over
`lamda_steps` (the official code's two annealers; by default lambda is constant, see the
config); the update counter is a buffer, so a resumed run continues both schedules.

Scoring: z = mu of the known row, the deterministic reverse process, decode; column 0 -inf.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender
from genrecsys.models.diffrec import (
    Denoiser,
    GaussianDiffusion,
    check_schedule,
    init_linear,
)
from genrecsys.data.batches import InteractionRows, user_batches


@dataclass
class LDiffRecConfig:
    n_clusters: int = 2
    item_vector_size: int = 64  # rank of the SVD whose item rows are clustered
    latent_size: int = 300  # summed over clusters
    vae_dropout: float = 0.5  # on the normalised input row, training only
    steps: int = 5
    noise_scale: float = 1e-3
    noise_min: float = 5e-4
    noise_max: float = 5e-3
    sampling_steps: int = 0
    hidden_sizes: tuple[int, ...] = (300,)  # denoiser
    time_emb_size: int = 10
    dropout: float = 0.0  # on the denoiser's latent input
    reweight: bool = True
    history: int = 10
    # diffusion loss weight: `lamda`, decaying linearly to `lamda_floor` over `lamda_steps`
    # updates (the official code's 0.03 -> 0.005 over 500); 0 steps: `lamda` throughout, which
    # did better on ML-100K validation (0.0726 vs 0.0574 NDCG@10 at lr 1e-2)
    lamda: float = 0.005
    lamda_floor: float = 0.005
    lamda_steps: int = 0
    kl_cap: float = 0.3  # the largest KL weight
    kl_steps: int = 200  # updates over which it rises from 0
    seed: int = 0  # SVD and k-means

    def __post_init__(self) -> None:
        check_schedule(self.steps, self.noise_scale, self.noise_min, self.noise_max, self.sampling_steps)
        if self.n_clusters < 1 or self.item_vector_size < 1 or self.latent_size < self.n_clusters:
            raise GenrecsysError("ldiffrec: n_clusters >= 1, item_vector_size >= 1, latent_size >= n_clusters")
        if not (0.0 <= self.vae_dropout < 1.0 and 0.0 <= self.dropout < 1.0):
            raise GenrecsysError("ldiffrec: dropouts must be in [0, 1)")
        if self.lamda < 0 or self.lamda_floor < 0 or self.kl_cap < 0 or self.lamda_steps < 0 or self.kl_steps < 0:
            raise GenrecsysError("ldiffrec: loss weights and annealing steps must be >= 0")


def item_vectors(split: SplitData, size: int, seed: int = 0, power_iters: int = 4) -> np.ndarray:
    """(I, k) item rows of a rank-k SVD of the training matrix (U x I), k = min(size, U, I),
    by a seeded randomized range finder: deterministic given the split, and never a dense
    I x I or U x I matrix."""
    x = split.train_matrix()[:, 1:].astype(np.float64)  # (U, I) sparse
    k = min(size, *x.shape)
    rng = np.random.default_rng(seed)
    y = np.asarray(x.T @ rng.standard_normal((x.shape[0], min(k + 10, x.shape[0]))))  # (I, k')
    for _ in range(power_iters):  # sharpen the spectrum; re-orthonormalise for stability
        y = np.linalg.qr(y)[0]
        y = np.asarray(x.T @ np.asarray(x @ y))
    q = np.linalg.qr(y)[0]  # (I, k')
    _, s, vt = np.linalg.svd(np.asarray(x @ q), full_matrices=False)  # (U, k') is small
    return (q @ vt.T[:, :k]) * s[:k]  # (I, k)


def kmeans(points: np.ndarray, k: int, seed: int = 0, iters: int = 100) -> np.ndarray:
    """(n, d) -> (n,) labels in 0..k-1, every cluster non-empty: Lloyd's algorithm from a
    seeded k-means++ start; an emptied cluster takes the point farthest from its centre.

    >>> kmeans(np.array([[0.0], [0.1], [5.0], [5.2]]), 2).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
    True
    """
    n = len(points)
    if not 1 <= k <= n:
        raise GenrecsysError(f"k-means: need 1 <= k <= {n} points, got k={k}")
    rng = np.random.default_rng(seed)
    sq = (points ** 2).sum(1)  # (n,)

    def dist2(centers: np.ndarray) -> np.ndarray:  # (n, k) without an (n, k, d) tensor
        return np.maximum(sq[:, None] - 2 * points @ centers.T + (centers ** 2).sum(1)[None], 0.0)

    centers = points[[rng.integers(n)]]
    while len(centers) < k:
        d = dist2(centers).min(1)
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
        centers = np.vstack([centers, points[rng.choice(n, p=p)]])
    labels = np.full(n, -1)
    for _ in range(iters):
        d = dist2(centers)
        new = d.argmin(1)
        for c in range(k):
            if not (new == c).any():  # steal the worst-served point of any cluster
                far = int(d[np.arange(n), new].argmax())
                new[far] = c
                d[far] = 0.0
        if (new == labels).all():
            break
        labels = new
        centers = np.stack([points[labels == c].mean(0) for c in range(k)])
    return labels


def cluster_items(split: SplitData, n_clusters: int, vector_size: int, seed: int = 0) -> np.ndarray:
    """(I + 1,) cluster of each item, -1 for the padding column."""
    v = item_vectors(split, vector_size, seed)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # by direction (taste), not popularity
    return np.concatenate([[-1], kmeans(v, n_clusters, seed)])


class LDiffRec(Recommender):
    Config = LDiffRecConfig
    default_lr = 1e-2  # ML-100K validation NDCG@10: 0.0574 vs 0.0378 at 1e-3, 0.0490 at 3e-3, 0.0673 at 2e-2
    default_batch_size = 400
    default_weight_decay = 0.0

    def __init__(self, split: SplitData, config: LDiffRecConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.rows = InteractionRows(split.train, self.n_items)
        self.diffusion = GaussianDiffusion(c.steps, c.noise_scale, c.noise_min, c.noise_max, c.history)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._build(cluster_items(split, c.n_clusters, c.item_vector_size, c.seed))

    def _build(self, item_cluster: np.ndarray) -> None:
        """The parts whose shapes follow from the cluster sizes: encoders, decoders, denoiser."""
        c = self.config
        item_cluster = torch.as_tensor(item_cluster, dtype=torch.long)
        self.register_buffer("item_cluster", item_cluster)  # (I+1,), -1 = padding
        self.groups = []  # names of (n_c,) item-index buffers, in cluster order
        self.latent_sizes = []
        for g in range(c.n_clusters):
            items = torch.nonzero(item_cluster == g).flatten()
            self.register_buffer(f"items_{g}", items, persistent=False)
            self.groups.append(f"items_{g}")
            self.latent_sizes.append(max(1, round(c.latent_size * len(items) / self.n_items)))
        sizes = [len(getattr(self, name)) for name in self.groups]
        self.encoders = nn.ModuleList(nn.Linear(n, 2 * d) for n, d in zip(sizes, self.latent_sizes))  # -> mu, logvar
        self.decoders = nn.ModuleList(nn.Linear(d, n) for n, d in zip(sizes, self.latent_sizes))
        for layer in (*self.encoders, *self.decoders):
            init_linear(layer)
        # a latent's scale carries information (unlike a 0/1 row's length): no normalisation
        self.denoiser = Denoiser(sum(self.latent_sizes), tuple(c.hidden_sizes), c.time_emb_size, c.dropout,
                                 normalize=False)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        saved = state_dict.get("item_cluster")
        if saved is not None and not torch.equal(saved.cpu(), self.item_cluster.cpu()):
            # clustered differently where it was saved (e.g. another BLAS moved a borderline item): its groups win
            device = self.item_cluster.device
            self._build(saved.cpu().numpy())
            self.to(device)
        return super().load_state_dict(state_dict, strict, assign)

    def batches(self, split, batch_size, rng: np.random.Generator):
        return user_batches(split, batch_size, rng)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, I+1) rows -> mu, logvar (B, Z), clusters concatenated in order."""
        h = F.dropout(F.normalize(x, dim=1), self.config.vae_dropout, self.training)
        mus, logvars = [], []
        for enc, name, d in zip(self.encoders, self.groups, self.latent_sizes):
            out = enc(h[:, getattr(self, name)])  # (B, 2 d_c)
            mus.append(out[:, :d])
            logvars.append(out[:, d:])
        return torch.cat(mus, 1), torch.cat(logvars, 1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> (B, I+1) logits in catalog order, padding at -inf."""
        out = z.new_full((len(z), self.n_items + 1), -torch.inf)
        for dec, name, part in zip(self.decoders, self.groups, z.split(self.latent_sizes, 1)):
            out[:, getattr(self, name)] = dec(part)
        return out

    def weights(self) -> tuple[float, float]:
        """(lambda, beta): the diffusion and KL weights at the current update."""
        c, n = self.config, float(self.updates)
        lam = max((1.0 - n / c.lamda_steps) * c.lamda, c.lamda_floor) if c.lamda_steps else c.lamda
        beta = min(c.kl_cap, n / c.kl_steps) if c.kl_steps else c.kl_cap
        return lam, beta

    def loss(self, batch):
        x = self.rows.dense(batch["users"]).to(self.updates.device)  # (B, I+1)
        mu, logvar = self._encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # (B, Z)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        diffusion, z0_hat = self.diffusion.training_loss(self.denoiser, z, self.config.reweight)
        nll = -(F.log_softmax(self._decode(z0_hat), dim=1)[:, 1:] * x[:, 1:]).sum(1).mean()
        lam, beta = self.weights()
        self.updates += 1
        return lam * diffusion.mean() + nll + beta * kl

    @torch.no_grad()
    def score(self, users, seqs):
        x = self.rows.dense(users, seqs).to(self.updates.device)  # training row + the sequence's items
        mu, _ = self._encode(x)
        gen = torch.Generator().manual_seed(0) if self.config.sampling_steps else None  # same inputs, same scores
        return self._decode(self.diffusion.denoise(self.denoiser, mu, self.config.sampling_steps, gen))  # (B, I+1)
