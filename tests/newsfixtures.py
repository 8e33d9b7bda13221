"""Helpers for tests of the news / CTR models: the tiny WordPiece tokenizer (committed
under tests/data/fixtures) and a tiny randomly initialised BERT built from it, standing
in for all-MiniLM-L6-v2 so unit tests need no model download."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "data" / "fixtures"
TOKENIZER = FIXTURES / "wordpiece-tiny"
MIND = FIXTURES / "mind"


def make_tiny_plm(directory: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER.iterdir():
        shutil.copy(f, directory / f.name)
    vocab = len((TOKENIZER / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(directory)
    return directory


def news_params(name: str, plm_dir: Path | None) -> dict:
    """Model params pointing a news/CTR model at the test tokenizer (and PLM); {} for others."""
    from genrecsys.registry import MODELS

    fields = {f.name for f in dataclasses.fields(MODELS.get(name).Config)}
    params: dict = {"text": {"tokenizer": str(TOKENIZER)}} if "text" in fields else {}
    if "plm" in fields:
        params["plm"] = str(plm_dir)
    return params


def make_tiny_causal_lm(directory: Path, layers: int = 2) -> Path:
    """A tiny randomly initialised Llama with the test WordPiece tokenizer: stands in for
    SmolLM2 in the fine-tuned LLM recommenders' tests (same architecture, 16-d)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER.iterdir():
        shutil.copy(f, directory / f.name)
    vocab = len((TOKENIZER / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(directory)
    return directory


def make_toy_semantic_ids(split, directory: Path) -> str:
    """Three-level codes for the split's items (3 x 3 x 3, not all used): prefixes with one,
    two and three continuations, so llmsid's exact scoring and beam walk a real tree."""
    import numpy as np

    from genrecsys.generative.semantic_ids import SemanticIDs, save_semantic_ids

    idx = np.arange(split.n_items)
    codes = np.vstack([np.zeros((1, 3), np.int64), np.stack([idx % 3, (idx // 3) % 3, idx // 9], 1)])
    sids = SemanticIDs(codes=codes, sizes=(3, 3, 3), item_ids=np.asarray(split.item_ids, dtype=str),
                       dataset=split.dataset.name, stats={})
    return str(save_semantic_ids(sids, directory).directory)
