"""GenRec (Cao & Liò): an encoder-decoder Transformer that *generates* the next item's
tokens. Input ``[BEG] user _ 09 43 item _ 00 12 ... [MASK] [END]``; each token's embedding
is token + 1D position + user-ID (user tokens) or item-ID (item tokens, shared by all
sub-tokens of an item) embedding (§4.1). The decoder generates the masked item's code.

Training follows the paper's two objectives through the shared loop: ``pretrain_epochs``
of cloze pretraining (one random training item replaced by ``[MASK]``, §4.2; the last two
items of every user are never seen, being the validation and test targets) then
finetuning with ``[MASK]`` appended after a prefix of the training sequence (§4.3).

Scoring for the full-ranking evaluator is *exact*: every catalog item's log-probability,
computed level by level over the valid code prefixes (a complete beam). Serving uses beam
search (:func:`genrecsys.generative.beam.beam_search`), constrained to catalog items by a
prefix trie by default; unconstrained decoding is kept to measure invalid generations.

The backbone is a Hugging Face BART: a small one from scratch by default (CPU-sized), or
the layers of a local BART checkpoint (``init_from``) with this model's own vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import sequence_windows
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.generative.seq2seq import additive, block_structure
from genrecsys.generative.tokenization import BEG, END, MASK, PAD, CodeTokenizer, DigitTokenizer
from genrecsys.generative.trie import CodeTrie
from genrecsys.models.base import Recommender


@dataclass
class GenRecConfig:
    d_model: int = 64
    layers: int = 2  # encoder layers = decoder layers
    heads: int = 2
    ffn_dim: int = 256
    dropout: float = 0.1  # on hidden states; attention dropout is off (on CPU it costs ~1/5 of a step)
    # history items in the encoder input (most recent kept). Each training transition needs its
    # own encoder pass, whose cost grows with the square of the length: 20 items is 3.5x cheaper
    # per sample than 50 on CPU.
    max_items: int = 20
    chunk: int = 2  # digits per sub-token: item_1234 -> 12, 34
    # The paper writes "item _ 12 34"; the two constant words carry no information and double
    # the encoder length (and CPU time), so by default an item is just its code "12 34".
    prefix_words: bool = False
    # popularity: items numbered by training popularity, so the first generated sub-token is a
    # popularity band (valid NDCG@10 0.078 -> 0.104 on ML-100K, BENCHMARKS.md) | catalog:
    # item_<index> as in the paper
    id_order: str = "popularity"
    samples_per_epoch: int = 8192  # "prefixes": finetuning transitions drawn per epoch (0: all of them)
    # prefixes: one encoder pass per transition, [MASK] appended (the paper's) | windows: every
    # training transition each epoch at SASRec-like cost — windows of max_items items, block-causal
    # attention (genrecsys.generative.seq2seq), no [MASK]; the same at scoring time
    training: str = "prefixes"
    codes: str | None = None  # semantic-ID directory (genrecsys semantic-ids build) instead of digit ids
    user_id_embedding: bool = True
    item_id_embedding: bool = True
    pretrain_masks_per_user: int = 8  # cloze samples drawn per user per pretraining epoch
    label_smoothing: float = 0.0
    init_from: str | None = None  # local Hugging Face BART directory


class GenRec(Recommender):
    Config = GenRecConfig
    default_lr = 3e-3  # 1e-3 (the paper's) converged too slowly in the CPU epoch budget
    default_batch_size = 256
    default_pretrain_epochs = 0

    def __init__(self, split: SplitData, config: GenRecConfig | None = None) -> None:
        super().__init__(split, config)
        from transformers import BartConfig, BartModel

        c = self.config
        if c.id_order not in ("catalog", "popularity"):
            raise GenrecsysError(f"genrec id_order must be catalog or popularity, got {c.id_order!r}")
        if c.training not in ("prefixes", "windows"):
            raise GenrecsysError(f"genrec training must be prefixes or windows, got {c.training!r}")
        if c.codes and c.prefix_words:
            raise GenrecsysError("genrec: prefix_words writes digit ids; drop it with codes=DIR")
        numbering = None
        if c.id_order == "popularity":
            counts = np.bincount(split.train.items, minlength=self.n_items + 1)[1:]
            rank = np.argsort(-counts, kind="stable")  # most popular first, ties by index
            nums = np.zeros(self.n_items + 1, dtype=np.int64)
            nums[rank + 1] = np.arange(1, self.n_items + 1)
            numbering = tuple(int(x) for x in nums)
        if c.codes:
            from genrecsys.generative.semantic_ids import load_semantic_ids

            sid = load_semantic_ids(c.codes, split)
            self.tok = CodeTokenizer(sid.codes, tuple(sid.sizes), n_users=self.n_users, chunk=c.chunk)
        else:
            self.tok = DigitTokenizer(self.n_items, self.n_users, chunk=c.chunk, prefix_words=c.prefix_words,
                                      numbering=numbering)
        self.trie = CodeTrie(self.tok.codes)
        max_tokens = 1 + len(self.tok.user_tokens(0)) + c.max_items * self.tok.tokens_per_item + 2
        if c.init_from:
            self.bart = _load_bart(c.init_from, self.tok.vocab_size, max_tokens)
        else:
            bc = BartConfig(vocab_size=self.tok.vocab_size, d_model=c.d_model, encoder_layers=c.layers,
                            decoder_layers=c.layers, encoder_attention_heads=c.heads, decoder_attention_heads=c.heads,
                            encoder_ffn_dim=c.ffn_dim, decoder_ffn_dim=c.ffn_dim, dropout=c.dropout,
                            attention_dropout=0.0, max_position_embeddings=max_tokens + 2, pad_token_id=PAD,
                            bos_token_id=BEG, eos_token_id=END, decoder_start_token_id=BEG, scale_embedding=False)
            self.bart = BartModel(bc)
        d = self.bart.config.d_model
        self.user_id = nn.Embedding(self.n_users + 1, d, padding_idx=0)
        self.item_id = nn.Embedding(self.n_items + 1, d, padding_idx=0)
        for emb in (self.user_id, self.item_id):
            nn.init.normal_(emb.weight, std=0.02)
            emb.weight.data[0].zero_()
        # Per item row (I + 2 rows: 0 = padding, I + 1 = [MASK]): its encoder tokens and item ids.
        T = self.tok.tokens_per_item
        item_tokens = np.full((self.n_items + 2, T), PAD, dtype=np.int64)
        item_ids = np.zeros((self.n_items + 2, T), dtype=np.int64)
        for i in range(1, self.n_items + 1):
            item_tokens[i] = self.tok.item_tokens(i)
            item_ids[i] = i
        item_tokens[self.n_items + 1, 0] = MASK
        self.register_buffer("item_tokens", torch.as_tensor(item_tokens), persistent=False)
        self.register_buffer("item_token_ids", torch.as_tensor(item_ids), persistent=False)
        user_tokens = np.array([self.tok.user_tokens(u) for u in range(self.n_users)], dtype=np.int64)
        self.register_buffer("user_tokens", torch.as_tensor(user_tokens), persistent=False)
        self.register_buffer("codes", torch.as_tensor(self.tok.codes), persistent=False)
        self._finetune: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.phase = "finetune"

    # ------------------------------------------------------------------ inputs
    @property
    def mask_item(self) -> int:
        return self.n_items + 1

    def encoder_inputs(self, users: torch.Tensor, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) users and (B, M) item rows (0 = padding, ``mask_item`` = [MASK]; left-padded or
        not) -> input embeddings (B, S, D) and attention mask (B, S), right-padded."""
        B = hist.shape[0]
        tok = self.item_tokens[hist].reshape(B, -1)  # (B, M*T)
        iid = self.item_token_ids[hist].reshape(B, -1)
        ut = self.user_tokens[users]  # (B, Lu)
        beg = torch.full((B, 1), BEG, dtype=torch.long, device=hist.device)
        end = torch.full((B, 1), END, dtype=torch.long, device=hist.device)
        tokens = torch.cat([beg, ut, tok, end], dim=1)
        uid = torch.cat([torch.zeros_like(beg), (users + 1).unsqueeze(1).expand_as(ut), torch.zeros_like(tok),
                         torch.zeros_like(end)], dim=1)
        iid = torch.cat([torch.zeros_like(beg), torch.zeros_like(ut), iid, torch.zeros_like(end)], dim=1)
        # move padding to the right (stable), so positions count from [BEG] for every row
        order = torch.sort((tokens == PAD).to(torch.int8), dim=1, stable=True).indices
        tokens, uid, iid = (torch.gather(x, 1, order) for x in (tokens, uid, iid))
        width = int((tokens != PAD).sum(1).max())
        tokens, uid, iid = tokens[:, :width], uid[:, :width], iid[:, :width]
        x = self.bart.shared(tokens)
        if self.config.user_id_embedding:
            x = x + self.user_id(uid)
        if self.config.item_id_embedding:
            x = x + self.item_id(iid)
        return x, tokens != PAD

    def encode(self, users: torch.Tensor, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.encoder_inputs(users, hist)
        out = self.bart.encoder(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state
        return out, mask

    def decode_logits(self, dec_tokens: torch.Tensor, enc: torch.Tensor, enc_mask: torch.Tensor) -> torch.Tensor:
        """(N, t) decoder tokens -> (N, t, V) next-token logits (output layer tied to the token embedding)."""
        h = self.bart.decoder(input_ids=dec_tokens, encoder_hidden_states=enc,
                              encoder_attention_mask=enc_mask.long()).last_hidden_state
        return h @ self.bart.shared.weight.T

    # ------------------------------------------------------------------ training
    def set_phase(self, phase: str) -> None:
        if phase == "pretrain" and self.config.training == "windows":
            raise GenrecsysError("genrec: cloze pretraining needs [MASK] inputs; use training=prefixes or no pretraining")
        self.phase = phase

    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        if self.phase == "finetune" and self.config.training == "windows":
            if self._finetune is None:
                self._finetune = sequence_windows(split.train, self.config.max_items)
            x, y, owners = self._finetune
            order = rng.permutation(len(x))
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                yield {"users": torch.as_tensor(owners[idx]), "seqs": torch.as_tensor(x[idx]), "targets": torch.as_tensor(y[idx])}
            return
        if self.phase == "pretrain":
            users, hist, targets = self._pretrain_samples(split, rng)
            order = rng.permutation(len(users))
        else:
            # Unlike SASRec, each transition needs its own encoder pass, so an epoch is a
            # uniform sample of transitions rather than all ~100k of ML-100K.
            users, hist, targets = self._finetune_samples(split)
            n = self.config.samples_per_epoch
            order = rng.permutation(len(users))[:n] if n else rng.permutation(len(users))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            yield {"users": torch.as_tensor(users[idx]), "hist": torch.as_tensor(hist[idx]),
                   "targets": torch.as_tensor(targets[idx])}

    def _finetune_samples(self, split: SplitData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every training transition: (items before position k) + [MASK] -> item k."""
        if self._finetune is None:
            M = self.config.max_items
            users, hists, targets = [], [], []
            for u in range(split.n_users):
                seq = split.train.of(u)
                for k in range(1, len(seq)):
                    row = np.zeros(M + 1, dtype=np.int64)
                    ctx = seq[max(0, k - M):k]
                    row[M - len(ctx):M] = ctx
                    row[M] = self.mask_item
                    users.append(u)
                    hists.append(row)
                    targets.append(seq[k])
            if not users:
                raise GenrecsysError("GenRec needs users with at least two training items")
            self._finetune = (np.asarray(users), np.stack(hists), np.asarray(targets))
        return self._finetune

    def _pretrain_samples(self, split: SplitData, rng: np.random.Generator):
        """Cloze: a random item of the (training) sequence replaced by [MASK], not only the last."""
        M = self.config.max_items
        users, hists, targets = [], [], []
        for u in range(split.n_users):
            seq = split.train.of(u)
            if len(seq) < 2:
                continue
            for _ in range(self.config.pretrain_masks_per_user):
                start = int(rng.integers(0, max(1, len(seq) - M + 1)))
                window = seq[start:start + M].copy()
                pos = int(rng.integers(0, len(window)))
                target = window[pos]
                window[pos] = self.mask_item
                row = np.zeros(M, dtype=np.int64)
                row[M - len(window):] = window
                users.append(u)
                hists.append(row)
                targets.append(target)
        return np.asarray(users), np.stack(hists), np.asarray(targets)

    def loss(self, batch):
        if "seqs" in batch:
            return self._window_loss(batch)
        enc, mask = self.encode(batch["users"], batch["hist"])
        code = self.codes[batch["targets"]]  # (B, L)
        B = code.shape[0]
        dec_in = torch.cat([torch.full((B, 1), BEG, dtype=torch.long, device=code.device), code], dim=1)
        labels = torch.cat([code, torch.full((B, 1), END, dtype=torch.long, device=code.device)], dim=1)
        logits = self.decode_logits(dec_in, enc, mask)  # (B, L+1, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               label_smoothing=self.config.label_smoothing)

    # ------------------------------------------------------------------ windows
    def window_encode(self, users: torch.Tensor, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,), (B, L) left-padded items -> encoder states (B, S, D), padding (B, S), block per token (S,).

        ``[BEG] user-tokens item-tokens..``: the prefix (block -1) is seen by every item block,
        item block i sees blocks <= i. BART's own layers run with that mask."""
        B, L = seqs.shape
        T = self.tok.tokens_per_item
        ut = self.user_tokens[users]  # (B, Lu)
        beg = torch.full((B, 1), BEG, dtype=torch.long, device=seqs.device)
        tokens = torch.cat([beg, ut, self.item_tokens[seqs].reshape(B, -1)], 1)  # (B, S)
        pad = tokens == PAD
        x = self.bart.shared(tokens)
        if self.config.user_id_embedding:
            x[:, 1:1 + ut.shape[1]] += self.user_id(users + 1).unsqueeze(1)
        if self.config.item_id_embedding:
            x[:, 1 + ut.shape[1]:] += self.item_id(self.item_token_ids[seqs].reshape(B, -1))
        pos = ((~pad).cumsum(1) - 1).clamp(min=0)  # positions count real tokens from [BEG], as in encode()
        enc = self.bart.encoder
        h = enc.layernorm_embedding(x + enc.embed_positions.weight[pos + enc.embed_positions.offset])
        h = F.dropout(h, enc.dropout, self.training)
        blocks = torch.cat([torch.full((1 + ut.shape[1],), -1, device=seqs.device),
                            torch.arange(L, device=seqs.device).repeat_interleave(T)])
        bias = additive(block_structure(blocks, blocks)[None, None] | pad[:, None, None, :])  # (B, 1, S, S)
        for layer in enc.layers:
            h = _hidden(layer(h, bias))
        return h, pad, blocks

    def _window_loss(self, batch):
        seqs, targets = batch["seqs"], batch["targets"]  # (B, L)
        B, L = seqs.shape
        enc, pad, blocks = self.window_encode(batch["users"], seqs)
        code = self.codes[targets]  # (B, L, C)
        C = code.shape[-1]
        dec = torch.cat([torch.full_like(code[..., :1], BEG), code[..., :-1]], -1).reshape(B, L * C)
        q_blocks = torch.arange(L, device=seqs.device).repeat_interleave(C)  # (L*C,)
        self_bias = additive((q_blocks[:, None] != q_blocks[None, :]) |
                             torch.ones(L * C, L * C, dtype=torch.bool, device=seqs.device).triu(1))  # in-block causal
        cross_bias = additive(block_structure(q_blocks, blocks)[None, None] | pad[:, None, None, :])  # (B, 1, L*C, S)
        d = self.bart.decoder
        pos = torch.arange(C, device=seqs.device).repeat(L)  # each block counts its own positions
        h = d.layernorm_embedding(self.bart.shared(dec) + d.embed_positions.weight[pos + d.embed_positions.offset])
        h = F.dropout(h, d.dropout, self.training)
        for layer in d.layers:
            h = _hidden(layer(h, self_bias[None, None], enc, encoder_attention_mask=cross_bias, use_cache=False))
        logits = (h @ self.bart.shared.weight.T).reshape(B, L, C, -1)
        keep = targets > 0
        return F.cross_entropy(logits[keep].reshape(-1, logits.shape[-1]), code[keep].reshape(-1),
                               label_smoothing=self.config.label_smoothing)

    # ------------------------------------------------------------------ scoring
    def _with_mask(self, seqs: torch.Tensor) -> torch.Tensor:
        seqs = seqs[:, -self.config.max_items:]
        return torch.cat([seqs, torch.full((seqs.shape[0], 1), self.mask_item, dtype=torch.long, device=seqs.device)], 1)

    def beam_state(self, users: torch.Tensor, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the decoder reads: the encoder output for the history + [MASK] (prefixes) or
        for the history window (windows), and its keep-mask."""
        if self.config.training == "windows":
            enc, pad, _ = self.window_encode(users, seqs[:, -self.config.max_items:])
            return enc, ~pad
        return self.encode(users, self._with_mask(seqs))

    def next_logp(self, state: tuple[torch.Tensor, torch.Tensor], prefixes: torch.Tensor) -> torch.Tensor:
        """(B, nb, level) generated tokens -> (B, nb, V) log-probabilities of the next token."""
        enc, mask = state
        B, nb, level = prefixes.shape
        dec = torch.cat([torch.full((B, nb, 1), BEG, dtype=torch.long, device=prefixes.device), prefixes], 2)
        logits = self.decode_logits(dec.reshape(B * nb, -1), enc.repeat_interleave(nb, 0), mask.repeat_interleave(nb, 0))
        return F.log_softmax(logits[:, -1].float(), -1).reshape(B, nb, -1)

    def score(self, users, seqs):
        """(B, I+1) exact log-probability of every item's code (column 0 = -inf)."""
        # the decoder runs once per (user, valid prefix): chunk users to bound memory
        budget = 65536 if users.is_cuda else 4096  # decoder rows per chunk; a GPU takes far more at once
        step = max(1, budget // max(len(p) for p in self.trie.prefixes))
        return torch.cat([self._score_chunk(users[s:s + step], seqs[s:s + step]) for s in range(0, len(users), step)])

    def _score_chunk(self, users, seqs):
        enc, mask = self.beam_state(users, seqs)
        B, dev = enc.shape[0], enc.device
        total = torch.zeros(B, self.n_items + 1, device=dev)
        for level, prefixes in enumerate(self.trie.prefixes):
            P = len(prefixes)
            pre = torch.as_tensor(prefixes, dtype=torch.long, device=dev).reshape(P, level)
            dec = torch.cat([torch.full((P, 1), BEG, dtype=torch.long, device=dev), pre], 1)  # (P, level+1)
            enc_r = enc.repeat_interleave(P, 0)
            mask_r = mask.repeat_interleave(P, 0)
            logits = self.decode_logits(dec.repeat(B, 1), enc_r, mask_r)[:, -1]  # (B*P, V)
            logp = F.log_softmax(logits, -1).reshape(B, P, -1)
            rows = torch.as_tensor(self.trie.prefix_index[:, level], device=dev)  # (I+1,)
            toks = self.codes[:, level]  # (I+1,)
            total = total + logp[:, rows, toks]
        total[:, 0] = float("-inf")
        return total


def _hidden(out):
    """A BART layer's hidden states (older transformers releases return a tuple)."""
    return out[0] if isinstance(out, tuple) else out


def _load_bart(path: str, vocab_size: int, max_tokens: int):
    from pathlib import Path

    from transformers import BartModel

    p = Path(path)
    if not (p / "config.json").is_file():
        raise GenrecsysError(f"init_from: {p} is not a Hugging Face model directory (no config.json)")
    bart = BartModel.from_pretrained(p)
    if bart.config.max_position_embeddings < max_tokens:
        raise GenrecsysError(f"init_from: {p} handles {bart.config.max_position_embeddings} positions, "
                             f"the input needs {max_tokens}; lower max_items")
    # Keep the pretrained Transformer layers and positions; the vocabulary is this model's
    # own (specials, words, digit chunks), so the token table is re-initialised at its size.
    bart.resize_token_embeddings(vocab_size)
    nn.init.normal_(bart.shared.weight, std=0.02)
    bart.config.pad_token_id, bart.config.bos_token_id, bart.config.eos_token_id = PAD, BEG, END
    bart.config.decoder_start_token_id = BEG
    return bart
