"""prepare_reland: the files a RELAND run trains with, what is cached between runs, the
ablation switches, and bad input (a reused pool from another encoder, no LLM)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from genrecsys.config import LLMConfig, RelandConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.client import LLM, EchoBackend
from genrecsys.experiment import train_behaviour_encoder
from genrecsys.reasoning.pool import build_pool, load_pool
from genrecsys.reasoning.run import behaviour_matrix, explanations, prepare_reland
from reasoningdata import group_matrix, split  # noqa: F401  (fixtures)


def echo(tmp_path):
    return LLM(LLMConfig(), backend=EchoBackend(), cache_path=tmp_path / "llm.sqlite")


def cfg(minilm, **kw) -> RelandConfig:
    return RelandConfig(encoder_epochs=2, text_encoder=minilm, **kw)


def test_prepare_writes_user_text_assignment_and_pool_with_seeds_within_budget(split, minilm, tmp_path):
    llm = echo(tmp_path)
    res = prepare_reland(split, cfg(minilm, item_features=True), llm, tmp_path / "cache", tmp_path / "out",
                         train_encoder=train_behaviour_encoder)
    users = np.load(res.user_text)
    assert users.shape == (split.n_users + 1, 384) and not users[0].any()  # row 0 is padding
    assert np.load(res.item_text).shape == (split.n_items + 1, 384)
    frame = pd.read_parquet(res.assignment)
    assert frame.user.tolist() == [str(u) for u in split.user_ids]
    pool = load_pool(res.pool_dir)
    assert 1 <= len(pool) <= 0.1 * split.n_users
    seeds = frame[frame.user.isin(pool.frame.user_id)]
    assert (seeds.seed_user == seeds.user).all() and np.allclose(seeds.similarity, 1.0, atol=1e-5)  # a seed finds itself
    assert res.llm["seed_users"] == len(pool) and res.llm["users"] == split.n_users
    assert res.llm["backend_calls"] == len(pool) and res.llm["prompt_tokens"] > 0
    assert res.model_params(relative_to=res.out_dir.parent) == {"user_text": "out/user_text.npy",
                                                                "item_text": "out/item_text.npy"}


def test_a_rerun_reuses_the_encoder_and_sends_nothing_to_the_llm(split, minilm, tmp_path):
    first = prepare_reland(split, cfg(minilm), echo(tmp_path), tmp_path / "cache", tmp_path / "a",
                           train_encoder=train_behaviour_encoder)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached encoder was trained again")

    again = prepare_reland(split, cfg(minilm), echo(tmp_path), tmp_path / "cache", tmp_path / "b",
                           train_encoder=no_training)
    assert again.llm["backend_calls"] == 0 and again.llm["cache_hits"] == first.llm["calls"]
    assert np.array_equal(np.load(first.user_text), np.load(again.user_text))
    assert "behaviour encoder: cache" in again.notes


def test_the_encoder_cache_key_covers_its_settings(split, tmp_path):
    m2, how = behaviour_matrix(split, RelandConfig(encoder_epochs=1, encoder_embedding_size=8), tmp_path,
                               train_encoder=train_behaviour_encoder)
    assert how == "trained" and m2.shape == (split.n_users + 1, 8)
    # cached: no trainer needed
    assert behaviour_matrix(split, RelandConfig(encoder_epochs=1, encoder_embedding_size=8), tmp_path)[1] == "cache"
    m3, how = behaviour_matrix(split, RelandConfig(encoder_epochs=1, encoder_embedding_size=4), tmp_path,
                               train_encoder=train_behaviour_encoder)
    assert how == "trained" and m3.shape[1] == 4


def test_random_sampling_and_direct_prompting_are_the_ablations(split, minilm, tmp_path):
    res = prepare_reland(split, cfg(minilm, sampling="random", prompt="direct"), echo(tmp_path), tmp_path / "cache",
                         tmp_path / "out", train_encoder=train_behaviour_encoder)
    pool = load_pool(res.pool_dir)
    assert set(pool.frame.strategy) == {"uniform"} and set(pool.frame.template) == {"reland_direct"}
    assert res.llm["template"] == "reland_direct"


def test_item_features_alone_need_no_llm_and_write_no_user_side(split, minilm, tmp_path):
    res = prepare_reland(split, cfg(minilm, rationales=False, item_features=True), None, tmp_path / "cache",
                         tmp_path / "out", train_encoder=train_behaviour_encoder)
    assert res.user_text is None and res.llm is None and res.model_params() == {"item_text": str(res.item_text)}
    assert explanations(tmp_path, ["u1"]) is None  # no assignment: not a RELAND run


def test_a_reused_pool_from_another_encoder_is_a_dimension_error(split, minilm, tmp_path):
    other = group_matrix(split)  # d = 4; the LightGCN encoder gives d = 64
    build_pool(echo(tmp_path), split, other, [0, 1], out_dir=tmp_path / "pool4")
    with pytest.raises(GenrecsysError, match="dimension mismatch"):
        prepare_reland(split, cfg(minilm, pool=str(tmp_path / "pool4")), None, tmp_path / "cache", tmp_path / "out",
                       train_encoder=train_behaviour_encoder)


def test_building_a_pool_without_an_llm_is_a_clear_error(split, minilm, tmp_path):
    with pytest.raises(GenrecsysError, match="needs an LLM"):
        prepare_reland(split, cfg(minilm), None, tmp_path / "cache", tmp_path / "out",
                       train_encoder=train_behaviour_encoder)


def test_an_encoder_to_train_without_a_trainer_is_a_clear_error(split, tmp_path):
    """reasoning trains nothing itself: the experiment layer hands it the LightGCN trainer."""
    with pytest.raises(GenrecsysError, match="train_encoder=genrecsys.experiment.train_behaviour_encoder"):
        behaviour_matrix(split, RelandConfig(encoder_epochs=1, encoder_embedding_size=8), tmp_path)


def test_an_empty_seed_budget_is_rejected_by_the_config():
    with pytest.raises(GenrecsysError, match="empty reasoning pool"):
        RelandConfig(seed_fraction=0)
    with pytest.raises(GenrecsysError, match="adaptive or random"):
        RelandConfig(sampling="kmeans")


def test_importing_the_run_module_does_not_import_torch():
    code = "import sys, genrecsys.reasoning.run; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
