"""GRU4Rec (Hidasi et al., 2016), in the RecBole variant: item embedding -> dropout ->
GRU -> dense, full-softmax cross-entropy over all items.

Trained at every position of sequence windows (each training transition is a target
once per epoch, like SASRec), scored from the last position.

Inputs are left-padded. The GRU has no biases (as in RecBole) and the padding is fed
as the zero vector, so over the padding every gate sees 0, the candidate state is
tanh(0) = 0 and the state stays exactly at its zero start: the padding is inert and the
GRU can run over the padded batch directly. `encode_packed` is the plain reference twin
(real items shifted to the front and packed, outputs shifted back); a test pins that
the two agree and that scores do not depend on how much padding precedes a sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.sasrec import NextItemRecommender
from genrecsys.reasoning.fusion import item_table, side_layers


@dataclass
class GRU4RecConfig:
    embedding_size: int = 64
    hidden_size: int = 128
    n_layers: int = 1
    dropout: float = 0.3  # on the item embeddings fed to the GRU
    max_len: int = 50
    user_text: str | None = None  # RELAND: .npy (U+1, d_text) rationale vectors, user u = row u+1; None = ID only
    user_fusion: str = "attention"  # RELAND fusion: attention (Eq. 5) | gated (zero-init residual gate)
    item_text: str | None = None  # "+f_item": .npy (I+1, d_text) item text vectors; None = ID only

    def __post_init__(self) -> None:
        if min(self.embedding_size, self.hidden_size, self.n_layers, self.max_len) < 1:
            raise GenrecsysError("gru4rec: embedding_size, hidden_size, n_layers and max_len must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise GenrecsysError(f"gru4rec: dropout must be in [0, 1), got {self.dropout}")


def shift_padding(seqs: torch.Tensor, lengths: torch.Tensor, to_right: bool) -> torch.Tensor:
    """Move the last `lengths` entries of each row to the front (left- to right-padded),
    or back (`to_right=False`: right- to left-padded). Works on (B, L) and (B, L, D)."""
    B, L = seqs.shape[:2]
    offset = (L - lengths) if to_right else lengths  # (B,)
    idx = (torch.arange(L, device=seqs.device)[None, :] + offset[:, None]) % L  # (B, L)
    if seqs.dim() == 3:
        idx = idx[:, :, None].expand(-1, -1, seqs.shape[2])
    return seqs.gather(1, idx)


class GRU4Rec(NextItemRecommender):
    Config = GRU4RecConfig
    default_lr = 3e-3  # tuned on ML-100K validation NDCG@10 (seeds 2020, 2021)
    default_batch_size = 64

    def __init__(self, split: SplitData, config: GRU4RecConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.item_emb = nn.Embedding(self.n_items + 1, c.embedding_size, padding_idx=0)
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.embedding_size, c.hidden_size, c.n_layers, batch_first=True, bias=False)
        self.dense = nn.Linear(c.hidden_size, c.embedding_size)
        nn.init.xavier_normal_(self.item_emb.weight)
        for name, w in self.gru.named_parameters():
            (nn.init.xavier_uniform_ if "ih" in name else nn.init.orthogonal_)(w)
        self.user_fusion, self.item_features = side_layers(c, self.n_users, self.n_items + 1, c.embedding_size)
        self._windows: tuple[np.ndarray, ...] | None = None

    def items(self) -> torch.Tensor:
        """(I+1, E) item embeddings, shared by the input and the output layer."""
        return item_table(self.item_features, self.item_emb.weight)

    def embed(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) item ids -> (B, L, E) input embeddings (not yet zeroed at the padding)."""
        return self.item_emb(seqs) if self.item_features is None else self.items()[seqs]

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) item ids, left-padded -> (B, L, E) outputs, zero at padding."""
        real = (seqs > 0).unsqueeze(-1)  # (B, L, 1)
        # padding embeds to exactly 0 (its embedding row is shared with the output layer, so it is not 0 itself)
        out, _ = self.gru(self.drop(self.embed(seqs) * real))  # (B, L, H); stays 0 over the padding
        return self.dense(out) * real  # (B, L, E)

    def encode_packed(self, seqs: torch.Tensor) -> torch.Tensor:
        """Reference twin of `encode`: the GRU only ever sees the real items."""
        B, L = seqs.shape
        lengths = (seqs > 0).sum(1)  # (B,)
        # an empty history still gets one step (on the padding id) so that packing works
        lengths_c = lengths.clamp(min=1)
        right = shift_padding(seqs, lengths_c, to_right=True)  # (B, L), right-padded
        x = self.drop(self.embed(right) * (right > 0).unsqueeze(-1))  # (B, L, E)
        packed = pack_padded_sequence(x, lengths_c.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)  # (B, L, H), zeros past the end
        out = shift_padding(out, lengths_c, to_right=False)  # (B, L, H), left-padded again
        return self.dense(out) * (seqs > 0).unsqueeze(-1)  # (B, L, E)
