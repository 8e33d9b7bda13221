"""TIGER (Rajput et al., NeurIPS'23): generative retrieval over semantic IDs.

Every item is a short code of semantic-ID tokens (``genrecsys.generative.semantic_ids``:
text vectors quantised level by level, plus a dedup level, so similar items share code
prefixes). An encoder reads the codes of the user's history and a decoder generates the
next item's code, one level at a time.

What differs from the paper, and why:

- Training sees every transition of the training data each epoch, batched by windows
  like our SASRec (``genrecsys.generative.seq2seq``: block-causal encoder, one decoder
  block per target), instead of one encoder pass per (prefix, target) sample.
- At each decoding step the softmax runs over that level's codebook only (a code token
  is only meaningful at its own level).
- Scores for the full-ranking evaluator are exact: every catalog item's log-probability
  under the trie-constrained decoder (normalised over the valid next tokens at each
  step), i.e. what an unbounded constrained beam would assign. Prefixes with a single
  valid continuation contribute log 1 = 0 and are skipped. Serving uses
  :func:`genrecsys.generative.beam.beam_search` (constrained by the prefix trie: 0
  invalid items by construction).
- No sampling settings exist anywhere in the decoding path: generation is greedy/beam
  over our own log-probabilities, never a model config's defaults.

``codes``: a semantic-ID directory (``genrecsys semantic-ids build``); None builds the
default ones (item text, residual k-means) in the cache on first use; ``"digits"`` writes
items as GenRec's popularity-ordered two-digit chunks instead (an ablation without
semantics).

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="tiger", model_params={"codes": "runs/sid-ml100k"})
>>> # run_experiment(cfg, "runs/tiger")   # see genrecsys.experiment
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import window_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.generative.seq2seq import BLOCKED, CodeSeq2Seq, additive, block_structure
from genrecsys.generative.tokenization import BEG, CodeTokenizer, DigitTokenizer
from genrecsys.generative.trie import CodeTrie, scoring_levels
from genrecsys.models.base import Recommender


@dataclass
class TIGERConfig:
    codes: str | None = None  # semantic-ID directory | None (build the default in the cache) | "digits"
    d_model: int = 64
    layers: int = 2  # encoder layers = decoder layers
    heads: int = 2
    ffn_dim: int = 256
    dropout: float = 0.1
    max_len: int = 20  # history items per window (encoder length = max_len x code length)
    user_buckets: int = 0  # TIGER hashes the user id into this many tokens (one prefix token); 0 = none
    item_id_embedding: bool = False  # add a per-item embedding to its code tokens (GenRec's; off in TIGER)

    def __post_init__(self) -> None:
        for name in ("d_model", "layers", "heads", "ffn_dim", "max_len"):
            if getattr(self, name) < 1:
                raise GenrecsysError(f"tiger: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise GenrecsysError(f"tiger: d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1 or self.user_buckets < 0:
            raise GenrecsysError(f"tiger: need 0 <= dropout < 1 and user_buckets >= 0, got {self.dropout}, {self.user_buckets}")


def item_tokenizer(split: SplitData, codes: str | None, cache_dir=None) -> CodeTokenizer:
    """The catalog's codes as a per-level tokenizer (see ``TIGERConfig.codes``)."""
    if codes == "digits":
        counts = np.bincount(split.train.items, minlength=split.n_items + 1)[1:]
        nums = np.zeros(split.n_items + 1, dtype=np.int64)
        nums[np.argsort(-counts, kind="stable") + 1] = np.arange(1, split.n_items + 1)
        digits = DigitTokenizer(split.n_items, split.n_users, numbering=tuple(int(x) for x in nums))
        local = digits.codes - DigitTokenizer.FIRST_CHUNK
        local[0] = 0
        return CodeTokenizer(local, (10 ** digits.chunk,) * digits.code_length)
    from genrecsys.generative.semantic_ids import build_semantic_ids, load_semantic_ids

    sid = load_semantic_ids(codes, split) if codes else build_semantic_ids(split, cache_dir=cache_dir)
    return CodeTokenizer(sid.codes, tuple(sid.sizes))


class TIGER(Recommender):
    Config = TIGERConfig
    default_lr = 1e-3
    default_batch_size = 128  # windows

    def __init__(self, split: SplitData, config: TIGERConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.tok = item_tokenizer(split, c.codes, split.meta.get("cache_dir"))
        if self.tok.n_items != self.n_items:
            raise GenrecsysError(f"tiger: the codes cover {self.tok.n_items} items, the dataset has {self.n_items}")
        self.trie = CodeTrie(self.tok.codes)
        T = self.tok.code_length
        self.net = CodeSeq2Seq(self.tok.vocab_size + c.user_buckets, c.d_model, c.layers, c.heads, c.ffn_dim,
                               c.dropout, T)
        self.item_pos = nn.Embedding(c.max_len, c.d_model)  # position of the item in the window
        self.level = nn.Embedding(T, c.d_model)  # level of a token inside its item's code
        self.item_id = nn.Embedding(self.n_items + 1, c.d_model, padding_idx=0) if c.item_id_embedding else None
        for emb in (self.item_pos, self.level, self.item_id):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)
        self.register_buffer("codes", torch.as_tensor(self.tok.codes), persistent=False)  # (I+1, T)
        allowed = torch.zeros(T, self.net.tokens.num_embeddings, dtype=torch.bool)
        for level in range(T):
            allowed[level, slice(*self.tok.level_range(level))] = True
        self.register_buffer("level_tokens", allowed, persistent=False)  # (T, V)
        if c.user_buckets:  # TIGER's user token: a stable hash of the user index, one token per bucket
            buckets = [zlib.crc32(str(u).encode()) % c.user_buckets for u in range(self.n_users)]
            self.register_buffer("user_bucket", torch.as_tensor(buckets, dtype=torch.long), persistent=False)  # (U,)
        self._windows: tuple[np.ndarray, ...] | None = None
        self._levels = scoring_levels(self.trie, self.net.tokens.num_embeddings)

    # ------------------------------------------------------------------ inputs
    def encode(self, users: torch.Tensor, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,) users, (B, L) left-padded items -> memory (B, S, D), padding (B, S), block of each token (S,)."""
        B, L = seqs.shape
        T = self.tok.code_length
        x = self.net.tokens(self.codes[seqs])  # (B, L, T, D)
        x = x + self.item_pos.weight[-L:, None] + self.level.weight
        if self.item_id is not None:
            x = x + self.item_id(seqs)[:, :, None]
        x = x.reshape(B, L * T, -1)
        pad = (seqs == 0).repeat_interleave(T, 1)  # (B, L*T)
        blocks = torch.arange(L, device=seqs.device).repeat_interleave(T)
        if self.config.user_buckets:
            ut = self.tok.vocab_size + self.user_bucket[users]  # (B,) TIGER's hashed user token
            x = torch.cat([self.net.tokens(ut)[:, None], x], 1)
            pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=seqs.device), pad], 1)
            blocks = torch.cat([torch.full((1,), -1, device=seqs.device), blocks])
        return self.net.encode(x, pad, blocks), pad, blocks

    def _mask_levels(self, logits: torch.Tensor, first_level: int = 0) -> torch.Tensor:
        """(..., t, V) logits of steps first_level.. -> other levels' tokens blocked."""
        t = logits.shape[-2]
        return logits.masked_fill(~self.level_tokens[first_level:first_level + t], BLOCKED)

    # ------------------------------------------------------------------ training
    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        return window_batches(self, split, batch_size, rng)

    def loss(self, batch):
        seqs, targets = batch["seqs"], batch["targets"]  # (B, L) each
        B, L = seqs.shape
        memory, pad, blocks = self.encode(batch["users"], seqs)
        code = self.codes[targets]  # (B, L, T)
        T = code.shape[-1]
        dec_in = torch.cat([torch.full_like(code[..., :1], BEG), code[..., :-1]], -1)  # (B, L, T)
        q_blocks = torch.arange(L, device=seqs.device).repeat_interleave(T)  # (L*T,)
        bias = additive(block_structure(q_blocks, blocks)[None, None] | pad[:, None, None, :])  # (B, 1, L*T, S)
        logits = self.net.decode(dec_in, self.net.memory_kv(memory), bias)  # (B, L, T, V)
        keep = targets > 0
        logits = self._mask_levels(logits[keep])  # (N, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), code[keep].reshape(-1))

    # ------------------------------------------------------------------ inference
    def beam_state(self, users: torch.Tensor, seqs: torch.Tensor):
        memory, pad, _ = self.encode(users, seqs[:, -self.config.max_len:])
        return self.net.memory_kv(memory), additive(pad[:, None, None, :])

    def next_logp(self, state, prefixes: torch.Tensor) -> torch.Tensor:
        """(B, nb, level) generated tokens -> (B, nb, V) log-probabilities of the next token."""
        kv, bias = state
        B, nb, level = prefixes.shape
        dec = torch.cat([torch.full((B, nb, 1), BEG, dtype=torch.long, device=prefixes.device), prefixes], -1)
        logits = self._mask_levels(self.net.decode(dec, kv, bias)[:, :, -1:], level)[:, :, 0]  # (B, nb, V)
        return F.log_softmax(logits.float(), -1)

    trie_normalized = True  # beam search renormalises over the trie's valid tokens, as score() does

    def reads_users(self) -> bool:
        return self.config.user_buckets > 0  # TIGER's hashed user token

    def score(self, users, seqs):
        """(B, I+1) exact trie-constrained log-probability of every item (column 0 = -inf)."""
        # users are chunked so the (users x candidate prefixes x tokens) decoder states stay small
        step = max(1, 2 ** 17 // max(1, max(len(lv[0]) * (i + 1) for i, lv in enumerate(self._levels))))
        return torch.cat([self._score_chunk(users[s:s + step], seqs[s:s + step]) for s in range(0, len(users), step)])

    def _score_chunk(self, users, seqs):
        kv, bias = self.beam_state(users, seqs)
        B, dev = len(users), seqs.device
        total = torch.zeros(B, self.n_items + 1, device=dev)
        for level, (prefixes, allowed, item_rows) in enumerate(self._levels):
            if len(prefixes) == 0:
                continue
            pre = torch.as_tensor(prefixes, device=dev).reshape(1, len(prefixes), level)
            logp = self.next_logp((kv, bias), pre.expand(B, -1, -1))  # (B, P, V)
            logp = torch.log_softmax(logp.masked_fill(~torch.as_tensor(allowed, device=dev), float("-inf")), -1)
            rows, items = (torch.as_tensor(a, device=dev) for a in item_rows)
            total[:, items] += logp[:, rows, self.codes[items, level]]
        total[:, 0] = float("-inf")
        return total

