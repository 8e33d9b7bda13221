"""Impression-protocol models in the one training loop: selection on validation AUC,
best-checkpoint restore, resume — the same machinery as every other model."""
from __future__ import annotations

import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.train.loop import evaluate, fit, seed_everything, selection_metric
from newsfixtures import news_params

EVAL = EvalConfig()


def _split():
    return leave_one_out(block_cycles(n_users=16, length=8))


def _model(name, split):
    seed_everything(0)
    return build_model(name, news_params(name, None), split)


def _cfg(**kw):
    return TrainConfig(**{"progress": False, "batch_size": 8, "lr": 0.01, "seed": 1, **kw})


def test_selection_defaults_to_auc_on_impressions_and_ndcg_on_full_ranking():
    assert selection_metric(TrainConfig(), "impressions") == "auc"
    assert selection_metric(TrainConfig(), "full") == "ndcg@10"
    assert selection_metric(TrainConfig(metric="mrr"), "impressions") == "mrr"


def test_news_models_validate_on_impressions_and_keep_the_best_auc():
    split = _split()
    model = _model("dcn", split)
    res = fit(model, split, _cfg(epochs=6, patience=100), EVAL)
    aucs = [h["valid"]["auc"] for h in res.history]
    assert "hit@10" not in res.best_valid and res.best_valid["auc"] == max(aucs)
    assert abs(evaluate(model, split, "valid", EVAL).metrics["auc"] - max(aucs)) < 1e-9


def test_resume_of_a_news_model_equals_an_uninterrupted_run(tmp_path):
    split = _split()
    straight = _model("nrms", split)
    fit(straight, split, _cfg(epochs=4, patience=100), EVAL, run_dir=tmp_path / "a")
    part = _model("nrms", split)
    fit(part, split, _cfg(epochs=2, patience=100), EVAL, run_dir=tmp_path / "b")
    resumed = _model("nrms", split)
    res = fit(resumed, split, _cfg(epochs=4, patience=100), EVAL, run_dir=tmp_path / "b", resume=True)
    assert res.epochs_run == 4
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b), k


def test_the_full_ranking_protocol_still_works_for_news_models():
    split = _split()
    model = _model("pnn", split)
    res = fit(model, split, _cfg(epochs=2), EvalConfig(protocol="full"))
    assert "ndcg@10" in res.best_valid and "auc" not in res.best_valid
