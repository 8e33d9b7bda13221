"""PLM-NR (Wu et al., SIGIR 2021), the PLM-NR-NRMS variant GENRE uses: a pretrained
language model news encoder and a Transformer user encoder (3 layers, GENRE §4.1).

News encoder: the item text (title, and abstract when enabled) through
all-MiniLM-L6-v2 (the embedded sentence-transformers model, loaded offline), its
last-layer token states projected 384 -> d, joined by the category / subcategory /
vector tokens of GENRE's input sequence (and, by default, learnable embeddings of the
title's word pieces — see `word_tokens`), then additive attention pooling.

**The PLM is frozen** and its token states are computed once per dataset (and cached on
disk under ``<cache>/plm`` when the split knows its cache directory). Fine-tuning even
its top layer would run MiniLM's last layer over every item of every batch — about
1.4 GFLOP per 1,000 title tokens forward and twice that backward — which on a CPU
costs more than the rest of the model; the trainable part here is the projection, the
attention pooling and the user encoder. PLM-NR's paper fine-tunes the PLM; expect this
frozen variant to trail a fine-tuned one.

User encoder: learned positions + 3 pre-norm Transformer blocks over the history's news
vectors, then additive attention. Score: dot product.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.files import building_file
from genrecsys.models.news import AdditiveAttention, ItemTokens, MatchingRecommender, NewsConfig, TransformerBlock


@dataclass
class PLMNRConfig(NewsConfig):
    plm: str | None = None  # Hugging Face encoder directory; None: embedded all-MiniLM-L6-v2
    plm_tokens: int = 32  # PLM tokens per item, [CLS] and [SEP] included
    plm_batch_size: int = 64
    # Learnable embeddings of the title's word pieces pooled beside the frozen PLM states: the
    # frozen states alone give each item only what a linear map of MiniLM's space can say
    # (no per-item capacity), and on ML-100K that stayed below Pop's AUC after 13 epochs
    # (BENCHMARKS.md). Trainable word pieces are a cheap stand-in for fine-tuning the PLM's
    # input layer; false = the frozen-only encoder.
    word_tokens: bool = True
    layers: int = 3  # Transformer user encoder (GENRE §4.1)
    heads: int = 4


def plm_token_states(texts: list[str], plm_dir: str | Path, max_tokens: int, batch_size: int = 64,
                     cache_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frozen last-layer token states of each text: (N, T, H) float16 and mask (N, T) bool,
    T = min(max_tokens, longest text). Cached in ``cache_dir/plm`` by model and texts."""
    from transformers import AutoModel, AutoTokenizer

    plm_dir = Path(plm_dir)
    cache = None
    if cache_dir is not None:
        h = hashlib.sha256()
        h.update((plm_dir / "config.json").read_bytes() if (plm_dir / "config.json").is_file() else b"")
        for f in sorted(plm_dir.glob("*.safetensors")) + sorted(plm_dir.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        h.update(json.dumps([max_tokens, texts]).encode())
        cache = Path(cache_dir) / "plm" / f"{h.hexdigest()[:32]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return z["states"], z["mask"]
    from transformers.utils import logging as hf_logging

    tok = AutoTokenizer.from_pretrained(str(plm_dir))
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in our logs
    try:
        model = AutoModel.from_pretrained(str(plm_dir)).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    enc = tok(texts, truncation=True, max_length=max_tokens)["input_ids"]
    width = max(len(x) for x in enc)
    states = np.zeros((len(texts), width, model.config.hidden_size), dtype=np.float16)
    mask = np.zeros((len(texts), width), dtype=bool)
    order = np.argsort([len(x) for x in enc], kind="stable")  # similar lengths per batch: less padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            w = max(len(enc[r]) for r in rows)
            ids = torch.zeros((len(rows), w), dtype=torch.long)
            att = torch.zeros((len(rows), w), dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, :len(enc[r])] = torch.as_tensor(enc[r])
                att[j, :len(enc[r])] = 1
            out = model(input_ids=ids, attention_mask=att).last_hidden_state  # (b, w, H)
            states[rows, :w] = out.numpy().astype(np.float16)
            mask[rows, :w] = att.numpy().astype(bool)
    if cache is not None:  # every seed's process of a variant may reach here at once: own temp file each
        with building_file(cache) as tmp:
            np.savez(tmp, states=states, mask=mask)
    return states, mask


class PLMNR(MatchingRecommender):
    Config = PLMNRConfig

    def __init__(self, split: SplitData, config: PLMNRConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        cache_dir = split.meta.get("cache_dir")
        plm_dir = Path(c.plm) if c.plm else self._embedded(cache_dir)
        key = ("plm_states", str(plm_dir), c.plm_tokens, repr(c.text))
        if key not in split.meta:  # shared by every model (and seed) built on this split
            split.meta[key] = plm_token_states(self.inputs.texts, plm_dir, c.plm_tokens, c.plm_batch_size, cache_dir)
        states, mask = split.meta[key]
        self.register_buffer("plm_states", torch.as_tensor(states), persistent=False)  # (I+1, T, H) float16
        self.register_buffer("plm_mask", torch.as_tensor(mask), persistent=False)  # (I+1, T)
        self.proj = nn.Linear(states.shape[2], D)
        self.specials = ItemTokens(self.inputs, D)  # (title,) category, subcategory, vector tokens
        self.special_segments = (("title",) if c.word_tokens else ()) + ("category", "subcategory")
        self.news_pool = AdditiveAttention(D)
        self.pos = nn.Embedding(c.max_history, D)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(D, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(D)
        self.user_pool = AdditiveAttention(D)
        self.drop = nn.Dropout(c.dropout)

    @staticmethod
    def _embedded(cache_dir) -> Path:
        from genrecsys.assets import embedded_text_encoder
        from genrecsys.data.movielens import default_cache_dir

        return embedded_text_encoder(cache_dir or default_cache_dir())

    def item_lengths(self):
        return self.plm_mask.sum(1)

    def encode_news(self, ids):
        mask = self.plm_mask[ids]
        width = max(int(mask.sum(1).max()), 1)  # rows are right-padded: drop all-padding columns
        x = self.proj(self.plm_states[ids, :width].float())  # (N, T, D)
        mask = mask[:, :width]
        s, smask = self.specials(ids, self.special_segments, vector=True)
        x, mask = torch.cat([x, s], 1), torch.cat([mask, smask], 1)
        return self.news_pool(self.drop(x), mask)  # (N, D)

    def user_encode(self, users, hist, hist_vecs):
        L = hist.shape[1]
        pad = hist == 0
        x = self.drop(hist_vecs + self.pos.weight[-L:])  # (B, L, D); the newest item has the last position
        for block in self.blocks:
            x = block(x, pad)
        return self.user_pool(self.norm(x), ~pad)  # (B, D)
