"""LLM recommenders fine-tuned on the catalog, in the one training loop.

``llmsid`` (LC-Rec / OneRec-SFT style): a causal LM reads a user's history written as
semantic-ID codes and writes the next item's code. The LLM is the embedded
SmolLM2-135M-Instruct (converted once from its GGUF into the cache, as the LLM layer does)
or any local Hugging Face causal LM or GGUF file; it is taught with LoRA adapters (``peft``), full
fine-tuning, or kept frozen (only the code tokens learn).

How it is built, and why:

- **The vocabulary extended with the code tokens**: one embedding row per semantic-ID
  token (every level's codebook, TIGER's vocabulary), tied between input and output as
  SmolLM2's own embeddings are, and fed to the LM as ``inputs_embeds`` beside the embedded
  prompt text. The LM's 49k-token output layer is never computed: a code position's
  softmax runs over that level's code tokens only (what constrained decoding allows).
- **All positions of a window at once** (as our SASRec and TIGER): a training row is the
  prompt followed by up to ``max_len`` + 1 items' codes; causal attention makes the loss
  of every item of the window one forward pass, equal to the mean of the window's
  prefixes trained separately (a test checks this).
- **Exact full-catalog scores** for the shared evaluator, as TIGER: every item's
  trie-normalised log-probability. The prefixes of the code trie are laid out after the
  history as one *tree* of tokens, each attending to the history and to its own ancestors
  (a 4-D attention mask, positions continuing the history's), so one forward pass per
  user batch gives every level's distribution. Beam search
  (:func:`genrecsys.generative.beam.beam_search`) uses the same tree for its beams:
  0 invalid items by construction, no sampling settings anywhere.
- **Titles in the history** (``titles`` = k > 0, off by default): each history item is its
  code followed by its title's first k tokens (a short title's slot padding is masked, and
  the state that predicts an item's first code token is the previous title's last real
  token). Triples the tokens per item at k = 8 with 4-token codes.
- **LC-Rec's alignment tasks** (``align`` > 0, off by default): each step also writes
  ``align_items`` random items' codes from their titles and their titles from their codes
  (the latter through the LM's own output layer), so the code tokens learn what the LM
  knows about the titles. Each task's rows are one padded table built at start-up; a test
  checks that they score exactly as each prompt alone.
- **Checkpoints hold what was trained**: ``state_dict`` leaves out the frozen base weights,
  so a run directory stores the adapters and code embeddings (a few MB), and the base
  model on disk is never modified. A run reloads by reading the base again.

Cost: a forward + backward of a 135M model is ~0.8 GFLOP per token; ``layers`` keeps the
first k decoder layers (a cost knob, off by default) and ``max_len`` bounds a window.
BENCHMARKS.md has the measured tokens/s and hours.

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="llmsid", model_params={"finetune": "lora", "lora_r": 8})
>>> # run_experiment(cfg, "runs/llmsid")   # see genrecsys.experiment
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import shuffled_batches, window_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.generative.trie import CodeTrie, scoring_levels
from genrecsys.llm.lora import LLAMA_LINEAR, prepare_finetune
from genrecsys.models.base import Recommender

FINETUNE_MODES = ("lora", "full", "frozen")
ALIGN_TASKS = ("title2code", "code2title")


@dataclass
class LLMSIDConfig:
    llm: str | None = None  # local HF causal-LM directory or .gguf file; None: the embedded SmolLM2-135M
    codes: str | None = None  # semantic-ID directory | None (build the default in the cache) | "digits"
    finetune: str = "lora"  # lora | full | frozen (only the code-token embeddings learn)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LLAMA_LINEAR
    # dropout on the input embeddings of a training window (prompt, codes, titles), as
    # SASRec and TIGER drop theirs (the LLM's own blocks have none); 0: off. At 0.1 it did
    # not help the 4-block llmsid on ML-100K in 16 epochs (BENCHMARKS.md)
    dropout: float = 0.0
    layers: int | None = None  # keep the first k decoder layers (cost knob); None: all
    max_len: int = 20  # history items per training window and at scoring time
    titles: int = 0  # history items written as code + their title's first k tokens (LC-Rec); 0: codes only
    prompt: str = "A user's history, oldest first, as item codes:"
    score_users: int = 8  # users per forward pass when scoring the whole catalog
    # LC-Rec's alignment tasks: each step also teaches `align_items` random items'
    # title -> code and code -> title, weighted `align` against the next-item loss (0: off)
    align: float = 0.0
    align_items: int = 16
    align_tasks: tuple[str, ...] = ("title2code", "code2title")
    title_tokens: int = 24  # a title's token cap in the alignment prompts

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        if self.finetune not in FINETUNE_MODES:
            raise GenrecsysError(f"llmsid: finetune must be one of {', '.join(FINETUNE_MODES)}, got {self.finetune!r}")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise GenrecsysError(f"llmsid: need lora_r >= 1, lora_alpha > 0, 0 <= lora_dropout < 1, got "
                                 f"{self.lora_r}, {self.lora_alpha}, {self.lora_dropout}")
        if self.layers is not None and self.layers < 1:
            raise GenrecsysError(f"llmsid: layers must be >= 1 or null, got {self.layers}")
        if not 0 <= self.dropout < 1:
            raise GenrecsysError(f"llmsid: dropout must be in [0, 1), got {self.dropout}")
        if not self.prompt:
            raise GenrecsysError("llmsid: prompt must be non-empty (the first token every position can attend to)")
        if self.max_len < 1 or self.score_users < 1 or self.titles < 0:
            raise GenrecsysError(f"llmsid: max_len and score_users must be >= 1 and titles >= 0, got {self.max_len}, "
                                 f"{self.score_users}, {self.titles}")
        self.align_tasks = tuple(self.align_tasks)
        bad = [t for t in self.align_tasks if t not in ALIGN_TASKS]
        if self.align < 0 or self.align_items < 1 or self.title_tokens < 1 or bad or not self.align_tasks:
            raise GenrecsysError(f"llmsid: need align >= 0, align_items >= 1, title_tokens >= 1 and align_tasks "
                                 f"from {', '.join(ALIGN_TASKS)}; got {self.align}, {self.align_items}, "
                                 f"{self.title_tokens}, {list(self.align_tasks)}")


# ---------------------------------------------------------------------- the base LLM
def resolve_llm(source: str | None, cache_dir: str | Path | None = None) -> str:
    """A directory transformers loads a causal LM from: the embedded SmolLM2 for None, a
    Hugging Face directory as it is, a .gguf converted once to float32 in the cache (the
    LLM layer's :func:`genrecsys.llm.local.resolve_model`, so both share the copy)."""
    from genrecsys.data.movielens import default_cache_dir
    from genrecsys.llm.local import resolve_model

    if source is not None and Path(source).expanduser().is_dir() and \
            not (Path(source).expanduser() / "config.json").is_file():
        raise GenrecsysError(f"llm {source!r}: not a Hugging Face model directory (no config.json) or a .gguf file")
    path, _ = resolve_model(str(Path(source).expanduser()) if source else None,
                            Path(cache_dir) if cache_dir else default_cache_dir())
    return str(path)


def load_causal_lm(source: str | None, cache_dir: str | Path | None = None, layers: int | None = None):
    """(lm, tokenizer): a causal LM in float32 and its tokenizer; ``layers`` keeps the first
    k blocks of its transformer body (``lm.get_decoder()``: embeddings, blocks, final norm)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars are the run's
    directory = resolve_llm(source, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        lm = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise GenrecsysError(f"llm {source or directory!r}: cannot load a causal LM: {str(exc).splitlines()[0]}") from exc
    decoder = lm.get_decoder()
    if layers is not None:
        blocks = decoder.layers
        if layers > len(blocks):
            raise GenrecsysError(f"llmsid: layers={layers} but the LM has {len(blocks)} blocks")
        decoder.layers = nn.ModuleList(list(blocks)[:layers])
        decoder.config.num_hidden_layers = layers
        if getattr(decoder.config, "layer_types", None):
            decoder.config.layer_types = decoder.config.layer_types[:layers]
    return lm, tokenizer


class LLMRecommender(Recommender):
    """What the fine-tuned LLM models share: checkpoints hold the trained weights only
    (``_frozen`` names the base LM's frozen ones, re-read from its source), and the
    optimizer sees the trainable parameters alone."""

    _frozen: set[str] = set()

    def state_dict(self, *args: Any, **kwargs: Any):
        """The trained weights only: the frozen base LM is read from its source again."""
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        for name in self._frozen:
            sd.pop(prefix + name, None)
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in self._frozen]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"{type(self).__name__}: checkpoint does not match this model (missing {missing[:3]}, "
                               f"unexpected {result.unexpected_keys[:3]}): same llm, layers, finetune and lora_* (and codes) needed")
        return result

    def make_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)



class LLMSID(LLMRecommender):
    """A causal LM that writes the next item's semantic ID (see the module docstring)."""

    Config = LLMSIDConfig
    default_lr = 1e-3
    default_batch_size = 16  # windows
    trie_normalized = True  # beam search renormalises over the trie's valid tokens, as score() does

    def __init__(self, split: SplitData, config: LLMSIDConfig | None = None) -> None:
        super().__init__(split, config)
        from genrecsys.models.tiger import item_tokenizer

        c = self.config
        cache_dir = split.meta.get("cache_dir")
        self.tok = item_tokenizer(split, c.codes, cache_dir)
        if self.tok.n_items != self.n_items:
            raise GenrecsysError(f"llmsid: the codes cover {self.tok.n_items} items, the dataset has {self.n_items}")
        self.trie = CodeTrie(self.tok.codes)
        T, V = self.tok.code_length, self.tok.vocab_size
        lm, text_tok = load_causal_lm(c.llm, cache_dir, c.layers)
        self.decoder = prepare_finetune(lm.get_decoder(), c.finetune, c.lora_r, c.lora_alpha, c.lora_dropout,
                                        c.lora_targets)
        words = self.decoder.get_input_embeddings().weight  # (vocab, H)
        H = words.shape[1]
        # New tokens start near the LM's own embeddings (their mean and spread), as
        # vocabulary extension usually does, so the first steps see in-distribution inputs.
        self.code_emb = nn.Embedding(V, H)
        with torch.no_grad():
            self.code_emb.weight.normal_(0, float(words.std())).add_(words.mean(0))
        prompt = text_tok(c.prompt, add_special_tokens=False)["input_ids"]
        self.register_buffer("prompt_ids", torch.as_tensor(prompt, dtype=torch.long), persistent=False)  # (P,)
        self.register_buffer("codes", torch.as_tensor(self.tok.codes), persistent=False)  # (I+1, T)
        allowed = torch.zeros(T, V, dtype=torch.bool)
        for level in range(T):
            allowed[level, slice(*self.tok.level_range(level))] = True
        self.register_buffer("level_tokens", allowed, persistent=False)  # (T, V)
        if c.titles:
            self._build_history_titles(split, text_tok)
        if c.align:
            self._build_alignment(split, text_tok, lm)
        self._frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        self._levels = scoring_levels(self.trie, V)
        self._score_tree = _trie_tree(self._levels)
        self._windows: tuple[np.ndarray, ...] | None = None

    def reads_users(self) -> bool:
        return False

    # ------------------------------------------------------------------ inputs
    def _build_history_titles(self, split: SplitData, text_tok) -> None:
        """Each item's first ``titles`` title tokens, right-padded: (I+1, W) ids and lengths."""
        from genrecsys.reasoning.rationale import TitleCatalog

        W = self.config.titles
        catalog = TitleCatalog.from_split(split)
        ids = np.zeros((self.n_items + 1, W), np.int64)
        lengths = np.zeros(self.n_items + 1, np.int64)
        for i in range(1, self.n_items + 1):
            t = list(text_tok(f" ({catalog.display(i)})", add_special_tokens=False)["input_ids"])[:W]
            ids[i, :len(t)], lengths[i] = t, len(t)
        self.register_buffer("title_ids", torch.as_tensor(ids), persistent=False)  # (I+1, W)
        self.register_buffer("title_len", torch.as_tensor(lengths), persistent=False)  # (I+1,)

    def _slot(self) -> int:
        """Tokens per history item: its code, then (with ``titles``) its title's slot."""
        return self.tok.code_length + self.config.titles

    def _history(self, seqs: torch.Tensor, extra: torch.Tensor | None = None):
        """(B, L) left-padded items [+ (B, n) further code tokens] -> embeddings (B, S, H),
        key mask (B, S) and positions (B, S) of the prompt followed by the items' codes
        (each followed by its title's tokens with ``titles``; a short title's padding is
        masked, so positions run on over the real tokens only)."""
        B, L = seqs.shape
        T = self.tok.code_length
        x = self.code_emb(self.codes[seqs])  # (B, L, T, H)
        keep = (seqs > 0)[..., None].expand(B, L, T)
        words = self.decoder.get_input_embeddings()
        if self.config.titles:
            W = self.config.titles
            x = torch.cat([x, words(self.title_ids[seqs])], 2)  # (B, L, T+W, H)
            has = torch.arange(W, device=seqs.device) < self.title_len[seqs][..., None]  # (B, L, W)
            keep = torch.cat([keep, has & (seqs > 0)[..., None]], 2)
        x, keep = x.reshape(B, L * self._slot(), -1), keep.reshape(B, L * self._slot())
        if extra is not None:
            x = torch.cat([x, self.code_emb(extra)], 1)
            keep = torch.cat([keep, extra > 0], 1)
        P = len(self.prompt_ids)
        x = torch.cat([words(self.prompt_ids).expand(B, -1, -1), x], 1)
        keep = torch.cat([torch.ones(B, P, dtype=torch.bool, device=seqs.device), keep], 1)
        pos = (keep.long().cumsum(1) - 1).clamp(min=0)
        return x, keep, pos

    def _code_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., H) hidden states -> (..., V) logits over the code tokens (tied embeddings)."""
        return h @ self.code_emb.weight.T

    # ------------------------------------------------------------------ alignment (LC-Rec)
    def _build_alignment(self, split: SplitData, text_tok, lm) -> None:
        """Every item's two alignment rows, built once as token tables (I+1, S): the title
        -> code row left-padded (its code tokens end every row, so the states that predict
        them sit in the last T columns), the code -> title row right-padded (the title's
        tokens are its targets). ``code`` marks code tokens (looked up in ``code_emb``), the
        rest are the LM's words."""
        from genrecsys.reasoning.rationale import TitleCatalog

        c, T = self.config, self.tok.code_length
        catalog = TitleCatalog.from_split(split)

        def ids(text: str) -> list[int]:
            return list(text_tok(text, add_special_tokens=False)["input_ids"])

        before_t, after_t = ids("An item titled"), ids(" has the code:")
        before_c, after_c = ids("The item with the code"), ids(" is titled")
        titles = [[]] + [ids(f' "{catalog.display(i)}"')[:c.title_tokens] for i in range(1, self.n_items + 1)]
        S1 = len(before_t) + c.title_tokens + len(after_t) + T
        S2 = len(before_c) + T + len(after_c) + c.title_tokens
        t2c = np.zeros((3, self.n_items + 1, S1), np.int64)  # ids, is-code, keep
        c2t = np.zeros((4, self.n_items + 1, S2), np.int64)  # ids, is-code, keep, target (-100: none)
        c2t[3] = -100
        for i in range(1, self.n_items + 1):
            code = [int(x) for x in self.tok.codes[i]]
            row = before_t + titles[i] + after_t + code
            t2c[0, i, S1 - len(row):] = row
            t2c[1, i, S1 - T:] = 1
            t2c[2, i, S1 - len(row):] = 1
            row = before_c + code + after_c + titles[i]
            c2t[0, i, :len(row)] = row
            c2t[1, i, len(before_c):len(before_c) + T] = 1
            c2t[2, i, :len(row)] = 1
            start = len(row) - len(titles[i])  # the title's tokens, each predicted from the state before it
            c2t[3, i, start - 1:len(row) - 1] = titles[i]
        self.register_buffer("t2c_rows", torch.as_tensor(t2c), persistent=False)  # (3, I+1, S1)
        self.register_buffer("c2t_rows", torch.as_tensor(c2t), persistent=False)  # (4, I+1, S2)
        head = lm.get_output_embeddings()
        # SmolLM2 ties its output layer to the input words, which the decoder holds (and trains
        # with finetune=full); an untied head is kept frozen beside it
        tied = head is None or head.weight is self.decoder.get_input_embeddings().weight
        self._untied_head = None if tied else head.weight.detach().clone()

    def _align_pass(self, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Hidden states (N, S, H) of the items' rows of one alignment table."""
        ids, code, keep = rows[0][items], rows[1][items].bool(), rows[2][items].bool()
        words = self.decoder.get_input_embeddings()
        x = torch.where(code[..., None], self.code_emb(ids * code), words(ids * ~code))
        pos = (keep.long().cumsum(1) - 1).clamp(min=0)
        return self.decoder(inputs_embeds=x, attention_mask=keep.long(), position_ids=pos).last_hidden_state

    def align_losses(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per item (N,): the mean cross-entropy of writing its code from its title
        (softmax over each level's code tokens, as the next-item loss) and of writing its
        title from its code (the LM's whole vocabulary), for the configured tasks."""
        out = {}
        T = self.tok.code_length
        if "title2code" in self.config.align_tasks:
            h = self._align_pass(self.t2c_rows, items)[:, -T - 1:-1]  # (N, T, H): the states before each code token
            logits = self._code_logits(h).masked_fill(~self.level_tokens, float("-inf"))
            out["title2code"] = F.cross_entropy(logits.transpose(1, 2), self.codes[items], reduction="none").mean(1)
        if "code2title" in self.config.align_tasks:
            h = self._align_pass(self.c2t_rows, items)  # (N, S2, H)
            target = self.c2t_rows[3][items]  # (N, S2), -100 off the title
            on = target >= 0
            head = self._untied_head if self._untied_head is not None else self.decoder.get_input_embeddings().weight
            nll = F.cross_entropy(h[on] @ head.T, target[on], reduction="none")  # (n_tokens,)
            per_item = torch.zeros(len(items), device=h.device).index_add_(0, on.nonzero()[:, 0], nll)
            out["code2title"] = per_item / on.sum(1).clamp(min=1)
        return out

    # ------------------------------------------------------------------ training
    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        windows = window_batches(self, split, batch_size, rng)
        if not self.config.align:
            return windows
        k = self.config.align_items  # drawn from the epoch's generator: a resumed epoch draws the same items
        return ({**b, "align": torch.as_tensor(rng.integers(1, self.n_items + 1, k))} for b in windows)

    def loss(self, batch):
        seqs, targets = batch["seqs"], batch["targets"]  # (B, L) each; targets[p] = seqs[p + 1]
        B, L = seqs.shape
        T = self.tok.code_length
        # the row is the history followed by the last target's code but its final token: every
        # target's tokens are teacher-forced from the item that follows it in the window
        last = self.codes[targets[:, -1]][:, :-1]  # (B, T-1)
        x, keep, pos = self._history(seqs, last)
        x = F.dropout(x, self.config.dropout, self.training)  # (B, S, H); identity in eval mode
        h = self.decoder(inputs_embeds=x, attention_mask=keep.long(), position_ids=pos).last_hidden_state
        P, S = len(self.prompt_ids), self._slot()
        # target j (the item after seqs[j]) has its level-l token at P + (j+1)*S + l; the state
        # before it is the token just before, except at level 0 with titles: the last real
        # token of seqs[j]'s title (its slot's padding is masked)
        j = torch.arange(L, device=seqs.device)
        at = P + (j[:, None] + 1) * S + torch.arange(T, device=seqs.device) - 1  # (L, T)
        at = at.expand(B, L, T).clone()
        if self.config.titles:
            at[:, :, 0] -= self.config.titles - self.title_len[seqs]
        h = h[torch.arange(B, device=seqs.device)[:, None, None], at]  # (B, L, T, H)
        valid = (targets > 0) & (seqs > 0)
        logits = self._code_logits(h[valid]).masked_fill(~self.level_tokens, float("-inf"))  # (N, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.codes[targets[valid]].reshape(-1))
        if self.config.align and "align" in batch:
            tasks = self.align_losses(batch["align"])
            loss = loss + self.config.align * sum(t.mean() for t in tasks.values()) / len(tasks)
        return loss

    # ------------------------------------------------------------------ tree passes
    def _tree_pass(self, seqs: torch.Tensor, tokens: torch.Tensor, ancestors: torch.Tensor, depth: torch.Tensor):
        """The history of (B, L) items followed by a tree of (B, K) code tokens (see
        :func:`tree_forward`): hidden states after the history (B, H) and the nodes (B, K, H)."""
        x, keep, pos = self._history(seqs)
        return tree_forward(self.decoder, x, keep, pos, self.code_emb(tokens), ancestors, depth)

    # ------------------------------------------------------------------ inference
    def beam_state(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return seqs[:, -self.config.max_len:]

    def next_logp(self, state: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """(B, nb, level) generated tokens -> (B, nb, V) log-probabilities of the next token.
        The beams are chains of a tree after the history: one pass for all of them."""
        seqs = state
        B, nb, level = prefixes.shape
        dev = seqs.device
        if level == 0:
            h, _ = self._tree_pass(seqs, torch.zeros(B, 0, dtype=torch.long, device=dev),
                                   torch.zeros(0, 0, dtype=torch.bool, device=dev), torch.zeros(0, dtype=torch.long, device=dev))
            h = h[:, None].expand(B, nb, -1)
        else:
            chain = torch.arange(level, device=dev)
            anc = torch.block_diag(*[(chain[:, None] >= chain[None]) for _ in range(nb)])  # (nb*level, nb*level)
            depth = (chain + 1).repeat(nb)
            _, hn = self._tree_pass(seqs, prefixes.reshape(B, nb * level), anc, depth)
            h = hn.reshape(B, nb, level, -1)[:, :, -1]
        logits = self._code_logits(h).masked_fill(~self.level_tokens[level], float("-inf"))
        return F.log_softmax(logits.float(), -1)

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """(B, I+1) exact trie-constrained log-probability of every item (column 0 = -inf)."""
        step = self.config.score_users
        return torch.cat([self._score_chunk(seqs[s:s + step]) for s in range(0, len(seqs), step)])

    def _score_chunk(self, seqs: torch.Tensor) -> torch.Tensor:
        B, dev = len(seqs), seqs.device
        tokens, anc, depth, node_of = self._score_tree
        h0, hn = self._tree_pass(seqs[:, -self.config.max_len:], torch.as_tensor(tokens, device=dev).expand(B, -1),
                                 torch.as_tensor(anc, device=dev), torch.as_tensor(depth, device=dev))
        total = torch.zeros(B, self.n_items + 1, device=dev)
        for level, (prefixes, allowed, item_rows) in enumerate(self._levels):
            if len(prefixes) == 0:
                continue
            h = h0[:, None] if level == 0 else hn[:, torch.as_tensor(node_of[level], device=dev)]  # (B, P, H)
            logits = self._code_logits(h).masked_fill(~torch.as_tensor(allowed, device=dev), float("-inf"))
            logp = torch.log_softmax(logits.float(), -1)
            rows, items = (torch.as_tensor(a, device=dev) for a in item_rows)
            total[:, items] += logp[:, rows, self.codes[items, level]]
        total[:, 0] = float("-inf")
        return total


@dataclass
class TALLRecConfig:
    llm: str | None = None  # as llmsid
    finetune: str = "lora"  # lora | full | frozen (nothing learns: the prompted LLM, a baseline)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LLAMA_LINEAR
    layers: int | None = None
    examples: int = 64  # k training examples (half liked, half not); 0: every training transition + one negative
    stride: int = 10  # examples = 0: transitions per training pass (their titles shared; 1 = one prompt each)
    recent: int = 10  # history titles in a prompt, most recent last
    seed: int = 0  # of the k examples and their negatives
    retriever: str = ""  # full ranking: a finished run whose top `candidates` the LLM re-ranks ("": score every item)
    candidates: int = 50
    answers: tuple[str, str] = ("Yes", "No")  # the answer words (their first tokens are read)

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.answers = tuple(self.answers)
        if len(self.answers) != 2:
            raise GenrecsysError(f"tallrec: answers must be two words (yes, no), got {list(self.answers)}")
        LLMSIDConfig(finetune=self.finetune, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
                     lora_dropout=self.lora_dropout, layers=self.layers)  # the same checks
        if self.examples < 0 or self.recent < 1 or self.candidates < 1 or self.stride < 1:
            raise GenrecsysError(f"tallrec: need examples >= 0, recent >= 1, candidates >= 1, stride >= 1, got "
                                 f"{self.examples}, {self.recent}, {self.candidates}, {self.stride}")


class TALLRec(LLMRecommender):
    """TALLRec (Bao et al., RecSys'23): the LLM instruction-tuned to answer whether a user
    will like a candidate, from k examples; the score is log P(Yes) - log P(No).

    A prompt is the user's recent titles, then the candidate's title and the question; the
    answer is trained with the LM's own loss on its first token (the paper's objective).
    Scoring shares the prefix: a user's candidates are chains of one tree after the history
    (:func:`tree_forward`), one pass per user. Training does too: a unit's liked and unliked
    candidate are two chains after one prefix, and with k = all (``examples`` = 0) a unit
    packs ``stride`` consecutive transitions of a user over one run of titles, each chain
    reading the titles before its own transition: ~5x fewer tokens per example than a
    prompt each at ``stride`` 10 (what makes k = all affordable on a CPU). Evaluated on
    impressions (AUC) by default; on full ranking it re-ranks a ``retriever`` run's top ``candidates`` (others keep the
    retriever's order below them), or scores every item where no retriever is given.
    """

    Config = TALLRecConfig
    default_lr = 3e-4
    default_batch_size = 4  # units: 8 answers at k > 0, up to 8 x stride at k = all
    protocol = "impressions"
    INSTRUCTION = "Given the movies a user watched, answer whether the user will watch the candidate next. "

    def __init__(self, split: SplitData, config: TALLRecConfig | None = None) -> None:
        super().__init__(split, config)
        from genrecsys.reasoning.rationale import TitleCatalog

        c = self.config
        cache_dir = split.meta.get("cache_dir")
        lm, self.text_tok = load_causal_lm(c.llm, cache_dir, c.layers)
        head = lm.get_output_embeddings().weight.detach()  # (vocab, H), tied to the inputs in SmolLM2
        self.decoder = prepare_finetune(lm.get_decoder(), c.finetune, c.lora_r, c.lora_alpha, c.lora_dropout,
                                        c.lora_targets)
        self.yes, self.no = (self._ids(" " + w)[0] for w in c.answers)
        if self.yes == self.no:
            raise GenrecsysError(f"tallrec: the tokenizer writes {c.answers[0]!r} and {c.answers[1]!r} with the same "
                                 "first token (set answers)")
        self.register_buffer("head", head.clone(), persistent=False)  # the LM's output layer (frozen)
        catalog = TitleCatalog.from_split(split)
        self.title_ids = [[]] + [self._ids(f' "{catalog.display(i)}"') for i in range(1, split.n_items + 1)]
        self.question_ids = self._ids("? Answer:")
        self.intro_ids = self._ids(self.INSTRUCTION + "Watched:")
        self.candidate_ids = self._ids(". Candidate:")
        self.train_part = split.train
        self._frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        # frozen: the prompted LLM as it is (the curve's zero-shot point): nothing to train
        self.trainable = c.finetune != "frozen"
        self._examples = self._sample_examples(split)
        self._runtime: dict[str, Any] = {"retriever": None}
        if c.retriever:
            from genrecsys.runs import load_run

            _, rsplit, retriever = load_run(c.retriever, cache_dir)
            if list(rsplit.item_ids) != list(split.item_ids) or list(rsplit.user_ids) != list(split.user_ids):
                raise GenrecsysError(f"tallrec: the retriever run {c.retriever} was trained on other data")
            self._runtime["retriever"] = retriever  # outside the module tree: re-read from its run directory

    def _ids(self, text: str) -> list[int]:
        return list(self.text_tok(text, add_special_tokens=False)["input_ids"])

    def reads_users(self) -> bool:
        """With a retriever, a user's training items are left out of the candidates."""
        return bool(self.config.retriever)

    # ------------------------------------------------------------------ prompts
    def _prefix(self, seq) -> list[int]:
        """Token ids of the instruction and the user's recent titles (oldest first)."""
        recent = [int(i) for i in np.asarray(seq).tolist() if int(i) > 0][-self.config.recent:]
        ids = list(self.intro_ids)
        for i in recent:
            ids += self.title_ids[i]
        return ids + self.candidate_ids

    def _chain(self, item: int) -> list[int]:
        return self.title_ids[item] + self.question_ids

    def _sample_examples(self, split: SplitData) -> tuple[np.ndarray, np.ndarray]:
        """Training units: ``window`` (N, L) items, left-padded with 0, and ``negatives`` (N, L).
        A slot j with a negative is a transition: the titles of ``window[:j]`` are its history,
        ``window[j]`` the item the user took next (answer Yes) and ``negatives[j]`` an item the
        user never interacted with (answer No), both asked in one pass.

        ``examples`` = k > 0 keeps k / 2 random transitions, one per unit (L = ``recent`` + 1:
        each branch's prompt is exactly the evaluation's). k = 0 takes every transition,
        ``stride`` to a unit (L = ``recent`` + ``stride``): the titles from ``recent`` before
        the unit's first transition to its last, so a branch reads between ``recent`` and
        ``recent`` + ``stride`` - 1 titles (fewer at a user's start), as SASRec trains every
        position of a window at once."""
        c, part = self.config, split.train
        rng = np.random.default_rng(c.seed)
        n = np.diff(part.indptr)
        if c.examples:
            owners = np.repeat(np.arange(split.n_users), np.maximum(n - 1, 0))  # one per transition
            steps = np.concatenate([np.arange(1, m) for m in n]) if len(n) else np.zeros(0, np.int64)
            pick = rng.choice(len(steps), size=min(len(steps), max(1, c.examples // 2)), replace=False)
            units = [(int(owners[i]), int(steps[i]), int(steps[i]) + 1) for i in pick]  # (user, first, end)
            width = c.recent + 1
        else:
            units = [(u, s, min(s + c.stride, int(n[u]))) for u in range(split.n_users)
                     for s in range(1, int(n[u]), c.stride)]
            width = c.recent + c.stride
        window = np.zeros((len(units), width), np.int64)
        negatives = np.zeros((len(units), width), np.int64)
        for row, (u, first, end) in enumerate(units):
            seq = part.of(u)
            items = seq[max(0, first - c.recent):end]
            window[row, width - len(items):] = items
            seen = set(seq.tolist())
            for slot in range(width - (end - first), width):  # the unit's transitions
                while True:
                    item = int(rng.integers(1, split.n_items + 1))
                    if item not in seen:
                        negatives[row, slot] = item
                        break
        return window, negatives

    def unit_tokens(self, window, negatives) -> int:
        """Tokens one training unit feeds the LLM (prefix titles + every branch's chain)."""
        items = [int(i) for i in window if int(i) > 0]
        asked = [(int(i), int(ng)) for i, ng in zip(window, negatives) if int(ng) > 0]
        prefix = len(self.intro_ids) + sum(len(self.title_ids[i]) for i in items[:-1])
        return prefix + sum(len(self._branch(i)) + len(self._branch(ng)) for i, ng in asked)

    def _branch(self, item: int) -> list[int]:
        """A candidate's tokens after a training prefix: what the evaluation's prompt has
        after the history (``candidate_ids`` are part of its prefix there)."""
        return self.candidate_ids + self._chain(item)

    # ------------------------------------------------------------------ training
    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        window, negatives = self._examples
        return shuffled_batches({"window": window, "negatives": negatives}, batch_size, rng)

    def loss(self, batch):
        """The LM loss on each answer's first token, every branch of a unit in one pass: the
        unit's titles are a shared prefix, each transition's two candidates are chains of a
        tree, and a chain sees the prefix only up to its transition (:func:`tree_forward`)."""
        dev = batch["window"].device
        prefixes, nodes, answers = [], [], []
        for window, negatives in zip(batch["window"].tolist(), batch["negatives"].tolist()):
            ids, cut, chains = list(self.intro_ids), {}, []
            for j, item in enumerate(window):
                if item <= 0:
                    continue
                cut[j] = len(ids)  # the prefix a transition at slot j may read
                if negatives[j] > 0:
                    chains += [(cut[j], self._branch(item), self.yes), (cut[j], self._branch(negatives[j]), self.no)]
                ids += self.title_ids[item]
            prefixes.append(ids[:max(cut.values())])  # the last item's title is no one's history
            nodes.append(chains)
            answers += [a for _, _, a in chains]
        B, S = len(prefixes), max(map(len, prefixes))
        K = max(sum(len(ch) for _, ch, _ in chains) for chains in nodes)
        ids = torch.zeros(B, S, dtype=torch.long, device=dev)
        keep = torch.zeros(B, S, dtype=torch.bool, device=dev)
        tokens = torch.zeros(B, K, dtype=torch.long, device=dev)
        anc = torch.eye(K, dtype=torch.bool, device=dev).repeat(B, 1, 1)  # padding nodes see themselves only
        depth = torch.ones(B, K, dtype=torch.long, device=dev)
        visible = torch.zeros(B, K, dtype=torch.long, device=dev)
        last = []  # (unit, node) of each chain's last token, where its answer is read
        for b, (prefix, chains) in enumerate(zip(prefixes, nodes)):  # right-padded
            ids[b, :len(prefix)] = torch.as_tensor(prefix, device=dev)
            keep[b, :len(prefix)] = True
            at = 0
            for cut, chain, _ in chains:
                span = slice(at, at + len(chain))
                tokens[b, span] = torch.as_tensor(chain, device=dev)
                anc[b, span, span] = torch.ones(len(chain), len(chain), dtype=torch.bool, device=dev).tril()
                depth[b, span] = torch.arange(1, len(chain) + 1, device=dev)
                visible[b, span] = cut
                at += len(chain)
                last.append((b, at - 1))
        embed = self.decoder.get_input_embeddings()
        pos = torch.arange(S, device=dev).expand(B, S)
        _, hn = tree_forward(self.decoder, embed(ids), keep, pos, embed(tokens), anc, depth, visible)
        rows, cols = torch.as_tensor(last, device=dev).T
        return F.cross_entropy(hn[rows, cols] @ self.head.T, torch.as_tensor(answers, device=dev))

    # ------------------------------------------------------------------ scoring
    def _log_odds(self, seq, items: list[int]) -> torch.Tensor:
        """One user's (C,) scores log P(Yes) - log P(No) of candidates ``items``, one pass."""
        dev = self.head.device
        prefix = torch.as_tensor(self._prefix(seq), device=dev)[None]  # (1, S)
        chains = [self._chain(i) for i in items]
        tokens = torch.as_tensor([t for ch in chains for t in ch], device=dev)[None]  # (1, K)
        lengths = torch.as_tensor([len(ch) for ch in chains], device=dev)
        owner = torch.repeat_interleave(torch.arange(len(chains), device=dev), lengths)  # (K,) chain of each node
        depth = torch.cat([torch.arange(1, n + 1, device=dev) for n in lengths.tolist()])
        anc = (owner[:, None] == owner[None]) & (depth[:, None] >= depth[None])  # same chain, not after
        embed = self.decoder.get_input_embeddings()
        keep = torch.ones_like(prefix, dtype=torch.bool)
        pos = torch.arange(prefix.shape[1], device=dev)[None]
        _, hn = tree_forward(self.decoder, embed(prefix), keep, pos, embed(tokens), anc, depth)
        last = torch.cumsum(lengths, 0) - 1
        logits = hn[0, last] @ self.head[[self.yes, self.no]].T  # (C, 2)
        return (logits[:, 0] - logits[:, 1]).float()

    def score_candidates(self, users, seqs, candidates):
        """(B,), (B, L), (B, C) -> (B, C) log-odds of Yes; padding candidates (0) get -inf."""
        out = torch.full(candidates.shape, float("-inf"), device=candidates.device)
        for b in range(len(seqs)):
            real = candidates[b] > 0
            if real.any():
                out[b, real] = self._log_odds(seqs[b].cpu().numpy(), candidates[b, real].tolist())
        return out

    def score(self, users, seqs):
        """(B, I+1): the retriever's top ``candidates`` re-ranked by the LLM above the rest in
        the retriever's order, or (no retriever) every item's log-odds."""
        retriever = self._runtime["retriever"]
        B, dev = len(seqs), seqs.device
        if retriever is None:
            every = torch.arange(1, self.n_items + 1, device=dev).expand(B, -1)
            return torch.cat([torch.full((B, 1), float("-inf"), device=dev), self.score_candidates(users, seqs, every)], 1)
        with torch.no_grad():
            base = retriever.score(users, seqs).float()  # (B, I+1)
        masked = base.clone()
        masked[:, 0] = float("-inf")
        masked.scatter_(1, seqs.clamp(min=0), float("-inf"))
        for b, u in enumerate(users.tolist()):  # what the evaluator masks: seen items are not candidates
            masked[b, torch.as_tensor(self.train_part.of(u), dtype=torch.long, device=dev)] = float("-inf")
        top = masked.topk(min(self.config.candidates, self.n_items), dim=1).indices  # (B, C)
        llm = self.score_candidates(users, seqs, top)  # (B, C)
        # the rest keep the retriever's order, below every LLM-ranked candidate
        lowest = llm.masked_fill(~torch.isfinite(llm), float("inf")).min(1, keepdim=True).values.clamp(max=1e30)
        out = base - base.max(1, keepdim=True).values + lowest - 1
        out.scatter_(1, top, llm)
        out[:, 0] = float("-inf")
        return out


def tree_forward(decoder: nn.Module, x: torch.Tensor, keep: torch.Tensor, pos: torch.Tensor, nodes: torch.Tensor,
                 ancestors: torch.Tensor, depth: torch.Tensor,
                 visible: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of a shared prefix followed by a tree of K nodes.

    x (B, S, H) prefix embeddings, keep (B, S) its real tokens, pos (B, S) their positions;
    nodes (B, K, H) node embeddings; ancestors (K, K) or (B, K, K) bool, [k, j] = node j is
    node k or one of its ancestors; depth (K,) or (B, K), 1-based. A node attends to the
    prefix and its own ancestors, at position (last prefix position + depth): what a plain
    causal pass over prefix + its path would compute, for every path at once.
    Returns the hidden state after the prefix's last real token (B, H) and after each node
    (B, K, H).
    """
    B, S = keep.shape
    K = nodes.shape[1]
    dev = x.device
    ancestors = ancestors.expand(B, K, K) if ancestors.dim() == 3 else ancestors[None].expand(B, K, K)
    causal = torch.ones(S, S, dtype=torch.bool, device=dev).tril()
    top = torch.cat([causal[None] & keep[:, None, :], torch.zeros(B, S, K, dtype=torch.bool, device=dev)], 2)
    seen = keep[:, None, :].expand(B, K, S)
    if visible is not None:
        seen = seen & (torch.arange(S, device=dev) < visible[..., None])
    below = torch.cat([seen, ancestors], 2)  # (B, K, S+K)
    # every row sees itself: a padded prefix row has no other key, and an empty softmax is NaN
    allowed = torch.cat([top, below], 1) | torch.eye(S + K, dtype=torch.bool, device=dev)  # (B, S+K, S+K)
    mask = torch.zeros(allowed.shape, dtype=x.dtype, device=dev).masked_fill(~allowed, torch.finfo(x.dtype).min)
    after = pos[:, -1:] if visible is None else pos.gather(1, (visible - 1).clamp(min=0))  # (B, 1) or (B, K)
    pos = torch.cat([pos, after + depth.expand(B, K)], 1)
    h = decoder(inputs_embeds=torch.cat([x, nodes], 1), attention_mask=mask[:, None], position_ids=pos).last_hidden_state
    # the prefix's last real token (a prefix may end in masked padding, e.g. a short title's)
    last = S - 1 - keep.flip(1).long().argmax(1)
    return h[torch.arange(B, device=dev), last], h[:, S:]


def _trie_tree(levels) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """The tree of code prefixes that exact scoring needs: every prefix with >= 2 valid
    continuations and its ancestors, one node per prefix (its last token). Returns node
    tokens (K,), ancestors-or-self (K, K), depths (K,) and, per level >= 1, the node of each
    of that level's scoring prefixes."""
    index: dict[tuple[int, ...], int] = {}
    tokens: list[int] = []
    parent: list[int] = []
    for prefixes, _, _ in levels[1:]:
        for p in prefixes.tolist():
            for d in range(1, len(p) + 1):
                key = tuple(p[:d])
                if key not in index:
                    index[key] = len(tokens)
                    tokens.append(key[-1])
                    parent.append(index[key[:-1]] if d > 1 else -1)
    K = len(tokens)
    anc = np.eye(K, dtype=bool)
    depth = np.ones(K, dtype=np.int64)
    for k in range(K):  # parents are numbered before their children
        if parent[k] >= 0:
            anc[k] |= anc[parent[k]]
            depth[k] = depth[parent[k]] + 1
    node_of = {level: np.asarray([index[tuple(p)] for p in prefixes.tolist()], dtype=np.int64)
               for level, (prefixes, _, _) in enumerate(levels) if level >= 1}
    return np.asarray(tokens, dtype=np.int64), anc, depth, node_of
