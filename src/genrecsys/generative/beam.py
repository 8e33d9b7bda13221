"""Beam search over item codes for a GenRec-style model, top-K distinct items per user.

Constrained (default): at each step only tokens that extend a valid catalog code are
allowed (prefix trie), so every returned item exists. Unconstrained: any non-padding
token may be generated, as in the original GenRec code; a generated code that is not a
catalog item is reported as invalid (item 0) instead of being silently mapped to an item.
Optionally, items the user has already seen are excluded.

A model takes part by providing ``tok`` (``vocab_size``, ``code_length``,
``decode_item``), ``trie`` (:class:`~genrecsys.generative.trie.CodeTrie`),
``beam_state(users, seqs)`` (what the decoder reads: encoder output, computed once) and
``next_logp(state, prefixes)`` ((B, nb, level) generated tokens -> (B, nb, V)
log-probabilities). A model with ``trie_normalized = True`` ranks items by log-probabilities
renormalised over the trie's valid tokens at each step, and the beam does the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genrecsys.generative.tokenization import PAD


@dataclass
class BeamResult:
    items: np.ndarray  # (B, K) item ids; 0 marks an invalid generation
    scores: np.ndarray  # (B, K) sequence log-probabilities
    invalid: int  # generated codes that are not catalog items
    generated: int  # codes returned in total (B * K)

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.generated if self.generated else 0.0


@torch.no_grad()
def beam_search(model, users: torch.Tensor, seqs: torch.Tensor, k: int = 20, beam: int | None = None, *,
                constrained: bool = True, seen: list[np.ndarray] | None = None) -> BeamResult:
    """Top-``k`` items for each user by beam search with ``beam`` (>= k) beams.

    ``seen``: per user, item ids to exclude (only honoured with ``constrained=True``, where
    the final token identifies the item).
    """
    beam = beam or k
    if beam < k:
        raise ValueError(f"beam ({beam}) must be >= k ({k})")
    model.eval()
    tok, trie = model.tok, model.trie
    V, L = tok.vocab_size, tok.code_length
    state = model.beam_state(users, seqs)
    B, dev = len(users), seqs.device
    prefixes = torch.zeros(B, 1, 0, dtype=torch.long, device=dev)  # (B, nb, level)
    logp_beams = torch.zeros(B, 1, device=dev)
    renormalize = constrained and getattr(model, "trie_normalized", False)
    blocked = None
    if seen is not None and constrained:
        blocked = torch.zeros(B, model.n_items + 1, dtype=torch.bool, device=dev)
        for b, items in enumerate(seen):
            blocked[b, torch.as_tensor(np.asarray(items, dtype=np.int64), device=dev)] = True
    for level in range(L):
        nb = prefixes.shape[1]
        logp = model.next_logp(state, prefixes)[..., :V]  # (B, nb, V)
        pre_list = [tuple(p) for p in prefixes.reshape(B * nb, level).tolist()]
        if constrained:
            allowed = torch.as_tensor(trie.allowed(pre_list, V), device=dev).reshape(B, nb, V)
            logp = logp.masked_fill(~allowed, float("-inf"))
            if renormalize:  # a dead beam (no valid continuation) stays at -inf, not NaN
                logp = torch.log_softmax(logp, -1).nan_to_num(nan=float("-inf"))
            if blocked is not None and level == L - 1:
                item_of = torch.as_tensor(np.stack([trie.final_items(p, V) for p in pre_list]), device=dev).reshape(B, nb, V)
                logp = logp.masked_fill(torch.gather(blocked, 1, item_of.reshape(B, -1)).reshape(B, nb, V) & (item_of > 0),
                                        float("-inf"))
        else:
            logp[:, :, PAD] = float("-inf")
        total = (logp_beams.unsqueeze(-1) + logp).reshape(B, nb * V)
        width = min(beam, total.shape[1])
        top_v, top_i = torch.topk(total, width, dim=1)
        parent, token = top_i // V, top_i % V
        prefixes = torch.cat([torch.gather(prefixes, 1, parent.unsqueeze(-1).expand(-1, -1, level)),
                              token.unsqueeze(-1)], 2)
        logp_beams = top_v
    codes = prefixes[:, :k].tolist()
    items = np.zeros((B, k), dtype=np.int64)
    for b in range(B):
        for j, code in enumerate(codes[b]):
            items[b, j] = tok.decode_item(code) or 0
    scores = logp_beams[:, :k].cpu().numpy()
    items[~np.isfinite(scores)] = 0  # fewer than k reachable items (all others excluded)
    invalid = int(((items == 0) & np.isfinite(scores)).sum())
    return BeamResult(items, scores, invalid, int(np.isfinite(scores).sum()))
