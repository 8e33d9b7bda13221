"""LLM-embedding dense retrieval (the Gen-RecSys survey's "LLM as retriever"): a user is the
text of their most recent items, an item its own text, both embedded by a sentence encoder
(the embedded all-MiniLM-L6-v2 by default), and items are ranked by cosine similarity.

- Zero-shot (``finetune=False``): nothing is trained; the encoder's space is used as it is.
- Fine-tuned (default): a linear map per side (H x H, each starting at the
  identity, so training starts from the zero-shot ranking), trained on the training interactions with a softmax over the whole catalog
  (temperature ``temperature``): the text of the items before a cut point -> the item at
  it, ``cuts_per_user`` cut points per user. The encoder stays frozen, so an epoch is one
  small matrix product per batch; the texts are encoded once.

Item text is the semantic-ID text (title, genres, year; `generative.semantic_ids`), the
user text the titles of the last ``recent`` items of the sequence, most recent first.
Scores depend on the sequence only (``reads_users`` False), so an anonymous visitor's items
can be scored. User texts are encoded as they come and kept in memory by text (an
evaluation pass asks for the same texts every epoch).
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


@dataclass
class TextRetrievalConfig:
    recent: int = 10  # items whose titles make the user's text
    finetune: bool = True  # learn the two maps on the training interactions (False: zero-shot cosine)
    temperature: float = 0.05  # of the fine-tuning softmax over cosine similarities
    cuts_per_user: int = 5  # fine-tuning examples per user per run (the same cut points every epoch)
    encoder: str | None = None  # sentence-transformers directory; None: the embedded all-MiniLM-L6-v2

    def __post_init__(self) -> None:
        if self.recent < 1 or self.cuts_per_user < 1 or self.temperature <= 0:
            raise GenrecsysError("textretrieval: recent >= 1, cuts_per_user >= 1 and temperature > 0 are required")


class TextRetrieval(Recommender):
    Config = TextRetrievalConfig
    default_lr = 1e-3
    default_batch_size = 256

    def __init__(self, split: SplitData, config: TextRetrievalConfig | None = None) -> None:
        from genrecsys.generative.semantic_ids import semantic_texts
        from genrecsys.reasoning.fusion import encode_texts
        from genrecsys.reasoning.rationale import TitleCatalog

        super().__init__(split, config)
        c = self.config
        self.trainable = c.finetune  # zero-shot: the loop evaluates once and stops
        self._cache_dir = split.meta.get("cache_dir")
        items = encode_texts(semantic_texts(split)[1:], c.encoder, 64, self._cache_dir)  # (I, H), cached on disk
        vectors = np.vstack([np.zeros((1, items.shape[1]), np.float32), items]).astype(np.float32)
        self.register_buffer("item_text", torch.from_numpy(vectors), persistent=False)  # (I+1, H)
        h = items.shape[1]
        self.user_proj = nn.Linear(h, h, bias=False)
        self.item_proj = nn.Linear(h, h, bias=False)
        nn.init.eye_(self.user_proj.weight)
        nn.init.eye_(self.item_proj.weight)
        catalog = TitleCatalog.from_split(split)
        self.titles = [""] + [catalog.display(i) for i in range(1, split.n_items + 1)]
        self._runtime: dict = {}  # the encoder, kept out of the module tree: not a parameter, not in model.pt
        self._memo: dict[str, np.ndarray] = {}
        self._examples: tuple[torch.Tensor, torch.Tensor] | None = None

    def _user_text(self, items) -> str:
        recent = [int(i) for i in items if int(i) > 0][-self.config.recent:][::-1]
        return "; ".join(self.titles[i] for i in recent)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """(N,) user texts -> (N, H), each text encoded once per model instance."""
        todo = sorted({t for t in texts if t not in self._memo})
        if todo:
            if "encoder" not in self._runtime:
                from genrecsys.reasoning.fusion import load_text_encoder

                self._runtime["encoder"] = load_text_encoder(self.config.encoder, self._cache_dir)
            vecs = self._runtime["encoder"].encode(todo, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
            self._memo.update(zip(todo, vecs.astype(np.float32)))
        return torch.from_numpy(np.stack([self._memo[t] for t in texts]))

    def _similarities(self, users_text: torch.Tensor) -> torch.Tensor:
        """(B, H) user vectors -> (B, I+1) cosine similarities after the maps, padding column -inf."""
        u = F.normalize(self.user_proj(users_text.to(self.item_text.device)), dim=1)
        v = F.normalize(self.item_proj(self.item_text), dim=1)
        sims = u @ v.T  # (B, I+1)
        sims[:, 0] = -torch.inf
        return sims

    def batches(self, split, batch_size, rng: np.random.Generator):
        if self._examples is None:
            self._examples = self._training_examples(split)
        users_text, targets = self._examples
        order = rng.permutation(len(targets))
        for start in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[start:start + batch_size])
            yield {"user_text": users_text[idx], "target": targets[idx]}

    def _training_examples(self, split: SplitData) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed cut points (seed 0): the text of each user's items before a cut -> the item at it."""
        rng = np.random.default_rng(0)
        texts, targets = [], []
        for u in range(split.n_users):
            seq = split.train.of(u)
            if len(seq) < 2:
                continue
            cuts = rng.choice(np.arange(1, len(seq)), size=min(self.config.cuts_per_user, len(seq) - 1), replace=False)
            for j in np.sort(cuts):
                texts.append(self._user_text(seq[:j]))
                targets.append(int(seq[j]))
        if not targets:
            raise GenrecsysError("textretrieval: no user has two training interactions to learn from")
        from genrecsys.reasoning.fusion import encode_texts

        vecs = encode_texts(texts, self.config.encoder, 64, self._cache_dir)  # one cached encoding pass
        return torch.from_numpy(vecs.astype(np.float32)), torch.as_tensor(targets)

    def loss(self, batch):
        return F.cross_entropy(self._similarities(batch["user_text"]) / self.config.temperature, batch["target"])

    def score(self, users, seqs):
        texts = [self._user_text(row) for row in seqs.cpu().tolist()]
        return self._similarities(self._encode(texts))

    def reads_users(self) -> bool:
        return False
