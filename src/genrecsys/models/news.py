"""Shared pieces of the news recommenders and CTR rankers (GENRE §2.2, Table 2).

A model = news encoder (item tokens -> d-vector) + user encoder (history vectors ->
d-vector) + interaction. Matching models score a candidate by a dot product and train
with cross-entropy over 1 click + k negatives (GENRE eq. (4)); ranking (CTR) models score
each (user, candidate) pair with their own interaction module and train with binary
cross-entropy (eq. (3)). Both train on click sessions (`genrecsys.data.sessions`) in the
shared loop and are evaluated on impressions by default (`protocol = "impressions"`).

Also here: the item-token embedding with the per-item vector projection (GENRE Fig. 2),
additive attention pooling, a pre-norm Transformer block, and GENRE's interest fusion
hook (eq. (1)-(2)) that every model applies to its user vector when
`interest_fusion=True`.

Encoding is deduplicated: a batch encodes each distinct item once (histories and
candidates overlap heavily); evaluation encodes the catalog once per round.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.itemtext import ItemInputs, ItemTextConfig, item_inputs
from genrecsys.data.sessions import session_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender, refresh_after_load


@dataclass
class NewsConfig:
    embedding_size: int = 64  # GENRE §4.1
    n_negatives: int = 4  # negatives per click (GENRE §4.1 negative ratio)
    max_history: int = 50  # most recent history items the user encoder reads
    session_size: int = 5  # clicks sharing one history encoding in training (1 = every prefix)
    dropout: float = 0.2
    text: ItemTextConfig = field(default_factory=ItemTextConfig)
    interest_fusion: bool = False  # GENRE eq. (1)-(2) from user-table topic / region lists
    interest_fusion_form: str = "mlp"  # mlp: the paper's v_iu = MLP([v_u; v_i]) | gated: v_u + g MLP(...), g from 0
    topics_column: str = "topics"
    regions_column: str = "regions"
    max_topics: int = 10
    max_regions: int = 5


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(..., S, D), (..., S) -> (..., D); all-masked rows give zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(-2) / m.sum(-2).clamp(min=1.0)


def trim_history(hist: torch.Tensor, max_len: int) -> torch.Tensor:
    """Left-padded (B, L) -> the last min(max_len, longest history) columns (at least one)."""
    hist = hist[:, -max_len:]
    longest = int((hist > 0).sum(1).max()) if hist.numel() else 0
    return hist[:, hist.shape[1] - max(longest, 1):]


def safe_padding(pad: torch.Tensor) -> torch.Tensor:
    """(B, L) True = padding; rows that are all padding keep their last key open (no NaN)."""
    empty = pad.all(1)
    if empty.any():
        pad = pad.clone()
        pad[empty, -1] = False
    return pad


class AdditiveAttention(nn.Module):
    """softmax_s(q . tanh(W x_s + b)) weighted sum over a masked sequence."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden or dim)
        self.query = nn.Linear(hidden or dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)  # (N, S)
        weights = torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1)
        return (weights.unsqueeze(-1) * x).sum(-2)  # (N, D)


def mlp(sizes: list[int], dropout: float, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def pack_left(tok: torch.Tensor) -> torch.Tensor:
    """(N, S) ids with padding anywhere -> the non-zero ids of each row left-aligned, in
    order, trimmed to the longest row (at least one column). An item's sequence then
    never depends on which other items share its batch."""
    order = torch.sort((tok == 0).to(torch.int8), dim=1, stable=True).indices
    tok = torch.gather(tok, 1, order)
    return tok[:, :max(int((tok > 0).sum(1).max()) if tok.numel() else 0, 1)]


class ItemTokens(nn.Module):
    """Item ids -> embedded token sequence (N, S, D) and mask (N, S).

    One embedding table covers word pieces, categories and subcategories; the selected
    segments are concatenated without gaps (`pack_left`); the per-item vector, when the
    data has one, is appended as one more token through a learnable projection (GENRE
    §4.1: 512-d CLIP features -> 64).
    """

    init_std = 1.0

    def __init__(self, inputs: ItemInputs, dim: int) -> None:
        super().__init__()
        self.segments = inputs.segments
        self.register_buffer("tokens", torch.as_tensor(inputs.tokens), persistent=False)  # (I+1, S)
        self.emb = nn.Embedding(inputs.vocab_size, dim, padding_idx=0)
        nn.init.normal_(self.emb.weight, std=self.init_std)
        with torch.no_grad():
            self.emb.weight[0].zero_()
        if inputs.vector is not None:
            self.register_buffer("vector", torch.as_tensor(inputs.vector), persistent=False)  # (I+1, V)
            self.vector_proj: nn.Module | None = nn.Linear(inputs.vector.shape[1], dim)
        else:
            self.vector = None
            self.vector_proj = None

    def columns(self, names: tuple[str, ...]) -> list[int]:
        return [c for n in names for c in range(self.segments[n].start, self.segments[n].stop)]

    def width(self, names: tuple[str, ...] = ("title", "abstract", "category", "subcategory"), vector: bool = True) -> int:
        return len(self.columns(names)) + int(vector and self.vector_proj is not None)

    def forward(self, ids: torch.Tensor, names: tuple[str, ...] = ("title", "abstract", "category", "subcategory"),
                vector: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokens[ids]
        if len(names) < len(self.segments):
            tok = tok[:, self.columns(names)]
        tok = pack_left(tok)  # (N, S)
        x, mask = self.emb(tok), tok > 0
        if vector and self.vector_proj is not None:
            v = self.vector[ids]  # (N, V)
            x = torch.cat([x, self.vector_proj(v).unsqueeze(1)], dim=1)
            mask = torch.cat([mask, (v != 0).any(-1, keepdim=True)], dim=1)
        return x, mask


class PooledItems(nn.Module):
    """The ranking models' news encoder (GENRE Table 2, "Pooling"): the mean of an
    item's token embeddings (title, category, subcategory, vector token)."""

    def __init__(self, inputs: ItemInputs, dim: int) -> None:
        super().__init__()
        self.tokens = ItemTokens(inputs, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x, mask = self.tokens(ids)
        return masked_mean(x, mask)  # (N, D)


class InterestFusion(nn.Module):
    """GENRE eq. (1)-(2): v_i = [mean(E_topics); mean(E_regions)], v_iu = MLP([v_u; v_i]).

    Users without topics (regions) contribute a zero half of v_i. The ``gated`` form keeps
    the user vector and adds the fused one through a gate that starts at zero,
    v_iu = v_u + tanh(a) MLP([v_u; v_i]) with a learned scalar a = 0 at the start, so a model
    begins exactly as its ORI self (the paper's form replaces v_u by an MLP of random
    weights, which costs accuracy even when the profiles are empty).
    """

    def __init__(self, split: SplitData, dim: int, cfg: NewsConfig) -> None:
        super().__init__()
        from genrecsys.data.profiles import user_profiles

        p = user_profiles(split, cfg.topics_column, cfg.regions_column, cfg.max_topics, cfg.max_regions)
        self.register_buffer("topics", torch.as_tensor(p.topics), persistent=False)  # (U, Kt)
        self.register_buffer("regions", torch.as_tensor(p.regions), persistent=False)  # (U, Kr)
        self.topic_emb = nn.Embedding(p.n_topics + 1, dim, padding_idx=0)
        self.region_emb = nn.Embedding(p.n_regions + 1, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        if cfg.interest_fusion_form not in ("mlp", "gated"):
            raise GenrecsysError(f"interest_fusion_form must be mlp or gated, got {cfg.interest_fusion_form!r}")
        self.gate = nn.Parameter(torch.zeros(())) if cfg.interest_fusion_form == "gated" else None

    def forward(self, v_u: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        t, r = self.topics[users], self.regions[users]
        v_i = torch.cat([masked_mean(self.topic_emb(t), t > 0), masked_mean(self.region_emb(r), r > 0)], -1)  # (B, 2D)
        if v_u.dim() == 3:  # per-candidate user vectors (DIN)
            v_i = v_i.unsqueeze(1).expand(-1, v_u.shape[1], -1)
        fused = self.mlp(torch.cat([v_u, v_i], dim=-1))
        return fused if self.gate is None else v_u + torch.tanh(self.gate) * fused


class TransformerBlock(nn.Module):
    """Pre-norm Transformer encoder block. `attend` lets target tokens attend to a
    history (this block's input) and to themselves, without the history attending back.
    Dropout is on the two residual branches only (none on attention weights or inside
    the feed-forward layer: on a CPU, drawing those masks cost a third of BST's step)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)  # (B, L, D)
        a = self.attn(h, h, h, key_padding_mask=safe_padding(pad), need_weights=False)[0]
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.ln2(x)))

    def attend(self, q: torch.Tensor, kv: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """q (B, C, D) targets; kv (B, L, D) history at this block's input; pad (B, L)."""
        B, C, _ = q.shape
        hq, hk = self.ln1(q), self.ln1(kv)
        keys = torch.cat([hk, hq], dim=1)  # (B, L + C, D)
        own = ~torch.eye(C, dtype=torch.bool, device=q.device)  # a target sees itself, not the others
        blocked = torch.cat([pad.unsqueeze(1).expand(B, C, -1), own.unsqueeze(0).expand(B, C, C)], dim=2)
        a = self.attn(hq, keys, keys, attn_mask=blocked.repeat_interleave(self.heads, dim=0), need_weights=False)[0]
        q = q + self.drop(a)
        return q + self.drop(self.ff(self.ln2(q)))


class NewsRecommender(Recommender):
    """Base of the eight models: data plumbing, deduplicated encoding, sessions, scoring."""

    Config = NewsConfig
    protocol = "impressions"
    default_lr = 1e-3  # GENRE §4.1
    default_weight_decay = 0.01  # GENRE §4.1; decoupled (AdamW), see make_optimizer
    default_batch_size = 128  # sessions of up to `session_size` clicks (~640 clicks)
    encode_chunk = 256  # items per forward, grouped by token count so little is padding

    def __init__(self, split: SplitData, config: NewsConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.inputs = item_inputs(split, c.text, split.meta.get("cache_dir"))
        self.fusion = None
        if c.interest_fusion:
            # gated: drawn from a forked RNG, so the rest of the model is the ORI model of the same seed
            gated = c.interest_fusion_form == "gated"
            with torch.random.fork_rng(devices=[]) if gated else contextlib.nullcontext():
                self.fusion = InterestFusion(split, c.embedding_size, c)
        self.register_buffer("token_counts", torch.as_tensor((self.inputs.tokens > 0).sum(1)), persistent=False)
        self._cache: torch.Tensor | None = None
        # New weights make cached item vectors stale.
        self.register_load_state_dict_post_hook(refresh_after_load)

    # ------------------------------------------------------------------ subclass hooks
    def encode_news(self, ids: torch.Tensor) -> torch.Tensor:
        """(N,) distinct item ids -> (N, D) news vectors."""
        raise NotImplementedError

    def interact(self, users: torch.Tensor, hist: torch.Tensor, hist_vecs: torch.Tensor,
                 cand_vecs: torch.Tensor) -> torch.Tensor:
        """users (B,), hist (B, L) ids, hist_vecs (B, L, D), cand_vecs (B, C, D) -> (B, C) logits."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared machinery
    def make_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """AdamW: GENRE's "Adam, weight decay 0.01" read as decoupled decay (w -= lr * 0.01 * w).

        As an L2 term inside Adam (torch.optim.Adam(weight_decay=0.01)) the decay gradient
        is normalised like any other: an embedding row absent from a batch (a rare word
        piece, an unpopular item's title) moves about `lr` toward zero in every step,
        however small 0.01 is, and the rare rows are most of the vocabulary."""
        return torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)

    def fuse(self, v_u: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return v_u if self.fusion is None else self.fusion(v_u, users)

    def item_lengths(self) -> torch.Tensor:
        """(I+1,) input length of each item, to group items of similar length."""
        return self.token_counts

    def encode_many(self, ids: torch.Tensor) -> torch.Tensor:
        """(N,) distinct ids -> (N, D), encoded in chunks of similar input length."""
        order = torch.argsort(self.item_lengths()[ids], stable=True)
        out = torch.cat([self.encode_news(ids[order[i:i + self.encode_chunk]])
                         for i in range(0, len(ids), self.encode_chunk)])
        return out[torch.argsort(order)]

    def item_table(self) -> torch.Tensor:
        """(I+1, D) vectors of every item (row 0: the padding item)."""
        if self._cache is not None and not self.training:
            return self._cache
        return self.encode_many(torch.arange(self.n_items + 1, device=self._device()))

    def news_vectors(self, *id_tensors: torch.Tensor) -> list[torch.Tensor]:
        """Vectors for several id tensors, encoding each distinct item once: (...,) -> (..., D)."""
        if self._cache is not None and not self.training:
            return [self._cache[t] for t in id_tensors]
        flat = torch.cat([t.reshape(-1) for t in id_tensors])
        uniq, inverse = torch.unique(flat, return_inverse=True)
        vecs = self.encode_many(uniq)[inverse]  # (sum N, D)
        out, start = [], 0
        for t in id_tensors:
            out.append(vecs[start:start + t.numel()].view(*t.shape, -1))
            start += t.numel()
        return out

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def on_eval_start(self) -> None:
        self._cache = None
        with torch.no_grad():
            self._cache = self.item_table()

    def on_train_start(self) -> None:
        self._cache = None

    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        c = self.config
        return session_batches(split, batch_size, rng, session_size=c.session_size, max_history=c.max_history,
                               n_neg=c.n_negatives)

    def batch_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, G, 1 + k) logits of a session batch; candidate 0 is the click."""
        B, G, K = batch["cands"].shape
        hist = trim_history(batch["hist"], self.config.max_history)
        hv, cv = self.news_vectors(hist, batch["cands"].view(B, G * K))
        return self.interact(batch["users"], hist, hv, cv).view(B, G, K)

    def score_candidates(self, users, seqs, candidates):
        seqs = trim_history(seqs, self.config.max_history)
        hv, cv = self.news_vectors(seqs, candidates)
        return self.interact(users, seqs, hv, cv)


class MatchingRecommender(NewsRecommender):
    """Dot product between the user vector and candidate news vectors; CE over 1 + k."""

    def user_encode(self, users: torch.Tensor, hist: torch.Tensor, hist_vecs: torch.Tensor) -> torch.Tensor:
        """(B,), (B, L), (B, L, D) -> (B, D)."""
        raise NotImplementedError

    def interact(self, users, hist, hist_vecs, cand_vecs):
        u = self.fuse(self.user_encode(users, hist, hist_vecs), users)  # (B, D)
        return torch.einsum("bd,bcd->bc", u, cand_vecs)

    def loss(self, batch):
        logits = self.batch_logits(batch)  # (B, G, 1 + k)
        mask = batch["mask"]
        target = torch.zeros(int(mask.sum()), dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits[mask], target)

    def score(self, users, seqs):
        seqs = trim_history(seqs, self.config.max_history)
        table = self.item_table()  # (I+1, D)
        u = self.fuse(self.user_encode(users, seqs, table[seqs]), users)
        return u @ table.T  # (B, I+1)


@dataclass
class RankingConfig(NewsConfig):
    hidden: tuple[int, ...] = (256, 128)  # the prediction MLP
    mlp_dropout: float = 0.0  # DeepCTR's default for these models


class RankingRecommender(NewsRecommender):
    """Per-pair click logits from an interaction module; binary cross-entropy."""

    Config = RankingConfig

    score_budget = 250_000  # users x items x history per call when `score` ranks everything (x d floats)

    def loss(self, batch):
        logits = self.batch_logits(batch)  # (B, G, 1 + k)
        labels = torch.zeros_like(logits)
        labels[..., 0] = 1.0
        mask = batch["mask"]
        return F.binary_cross_entropy_with_logits(logits[mask], labels[mask])

    def score(self, users, seqs):
        seqs = trim_history(seqs, self.config.max_history)
        table = self.item_table()
        hv = table[seqs]
        out = []
        chunk = max(1, self.score_budget // max(1, len(users) * seqs.shape[1]))
        for start in range(0, self.n_items + 1, chunk):
            items = torch.arange(start, min(start + chunk, self.n_items + 1), device=seqs.device)
            cv = table[items].unsqueeze(0).expand(len(users), -1, -1)
            out.append(self.interact(users, seqs, hv, cv))
        return torch.cat(out, dim=1)  # (B, I+1)
