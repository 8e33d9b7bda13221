"""The real embedded SmolLM2-135M writing rationales for two ML-100K seed users."""
from __future__ import annotations

import numpy as np
import pytest

from genrecsys.config import LLMConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.llm.client import LLM
from genrecsys.reasoning.encoder import pad_user_vectors
from genrecsys.reasoning.pool import PoolConfig, build_pool
from genrecsys.reasoning.retrieval import assign_rationales


@pytest.mark.integration
def test_smollm2_rationales_are_kept_matched_to_the_catalog_and_served_to_every_user(ml100k, ml100k_cache, tmp_path):
    split = leave_one_out(ml100k)
    m = pad_user_vectors(np.random.default_rng(0).normal(size=(split.n_users, 8)))  # any encoder will do here
    llm = LLM(LLMConfig(batch_size=2, threads=1), cache_dir=ml100k_cache, cache_path=tmp_path / "cache.sqlite")
    cfg = PoolConfig(max_history=10, n_items=5, max_tokens=96)
    pool, stats = build_pool(llm, split, m, [0, 1], cfg)
    assert len(pool) == 2 and stats.total.backend_calls == 2
    assert pool.frame.model.iloc[0].startswith("SmolLM2-135M-Instruct")
    for _, row in pool.frame.iterrows():
        assert row.text.strip() and row.step1 and row.step2  # kept whether it parsed or not
        assert row.prompt_tokens > 0 and 0 < row.completion_tokens <= 96
        assert all(1 <= i <= split.n_items for i in row.matched_items)
        assert set(row.novel_items) <= set(row.matched_items)
    _, again = build_pool(llm, split, m, [0, 1], cfg)
    assert again.total.backend_calls == 0 and again.total.cache_hits == 2
    a = assign_rationales(pool, m)
    assert len(a.rationale) == split.n_users and set(a.seed_users[:, 0]) <= {0, 1}
    llm.close()
