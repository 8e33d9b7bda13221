"""llmrank with the real embedded SmolLM2-135M over a real ML-100K retriever run: both
readouts answer within the candidates (violations 0 by construction), and a rerun is free."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.config import ExperimentConfig, TrainConfig
from genrecsys.eval.ranking import pad_left
from genrecsys.experiment import build_model, load_split, run_experiment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup(ml100k_cache_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("llmrank-ml100k")
    run_experiment(ExperimentConfig(model="pop", train=TrainConfig(progress=False)), d / "pop", cache_dir=ml100k_cache_dir)
    split = load_split(ExperimentConfig(), ml100k_cache_dir)
    split.meta["cache_dir"] = str(ml100k_cache_dir)
    who = split.eval_users("test")[:3]
    return d, split, torch.as_tensor(who), torch.as_tensor(pad_left(split.history("test"), who, 50))


@pytest.mark.parametrize("readout", ["letters", "likelihood"])
def test_smollm2_ranks_a_retrievers_candidates_within_them(setup, readout):
    d, split, users, seqs = setup
    params = {"retriever": str(d / "pop"), "readout": readout, "candidates": 8,
              "llm": {"threads": 2, "cache": str(d / "cache.sqlite")}}
    m = build_model("llmrank", params, split)
    ranked = m.rank(users, seqs)
    assert len(ranked) == 3 and m.counts["failed"] == 0 and m.counts["violations"] == 0
    for b, r in ranked.items():
        seen = set(split.history("test").of(int(users[b])).tolist())
        assert len(r.candidates) == 8 and not set(r.candidates) & seen  # the user's unseen items only
        for p in r.probs:
            assert p is not None and p.shape == (8,) and np.isclose(p.sum(), 1.0) and (p >= 0).all()
    calls = m.llm.stats.total.backend_calls
    again = build_model("llmrank", params, split)
    again.rank(users, seqs)
    assert again.llm.stats.total.backend_calls == 0 and calls > 0  # every answer from the cache
    scores = m.score(users, seqs)
    top = scores.topk(8, dim=1).indices
    for b, r in ranked.items():
        assert set(top[b].tolist()) == set(r.candidates)  # the ranked candidates come first
