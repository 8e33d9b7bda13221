"""llmsid and tallrec on the real embedded SmolLM2-135M (its first 2 blocks, to stay quick)
over ML-100K: training steps lower the loss, the beam returns only catalog items, the
log-odds are finite, and a checkpoint holds the adapters alone (a few MB)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.config import ExperimentConfig
from genrecsys.eval.ranking import pad_left
from genrecsys.experiment import build_model, load_split
from genrecsys.generative.beam import beam_search

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def split(ml100k_cache_dir):
    split = load_split(ExperimentConfig(), ml100k_cache_dir)
    split.meta["cache_dir"] = str(ml100k_cache_dir)
    return split


def _steps(model, split, n, batch_size):
    torch.manual_seed(0)
    opt = model.make_optimizer(model.default_lr * 3, 0.0)
    batch = next(iter(model.batches(split, batch_size, np.random.default_rng(0))))
    losses = []
    for _ in range(n):  # the same batch: the loss must fall
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def test_llmsid_on_smollm2_learns_and_generates_catalog_items(split):
    torch.set_num_threads(2)
    m = build_model("llmsid", {"codes": "digits", "layers": 2, "max_len": 10}, split)
    assert m.decoder.config.hidden_size == 576 and len(m.prompt_ids) > 3  # SmolLM2's width, its tokenizer
    losses = _steps(m, split, 4, 8)
    assert losses[-1] < losses[0]
    sd = m.state_dict()
    assert sum(v.numel() for v in sd.values()) * 4 < 5e6 and all("lora_" in k or k.startswith("code_emb") for k in sd)
    m.eval()
    who = split.eval_users("test")[:2]
    seqs = torch.as_tensor(pad_left(split.history("test"), who, 10))
    result = beam_search(m, torch.as_tensor(who), seqs, k=5, beam=5)
    assert result.invalid == 0 and (result.items > 0).all() and (result.items <= split.n_items).all()


def test_tallrec_on_smollm2_reads_yes_and_no_and_learns(split):
    torch.set_num_threads(2)
    m = build_model("tallrec", {"layers": 2, "examples": 8}, split)
    assert m.text_tok.decode([m.yes]).strip() == "Yes" and m.text_tok.decode([m.no]).strip() == "No"
    losses = _steps(m, split, 4, 8)
    assert losses[-1] < losses[0]
    m.eval()
    with torch.no_grad():
        odds = m.score_candidates(torch.tensor([0]), torch.as_tensor(split.train.of(0)[-10:])[None],
                                  torch.tensor([[1, 2, 3, 0]]))
    assert torch.isfinite(odds[0, :3]).all() and odds[0, 3] == float("-inf")
