"""The impression protocol from the command line: news/CTR models on the MIND-format
fixture and on ML-100K, other models scored on the same impressions."""
from __future__ import annotations

import json

import pytest

from genrecsys.cli.main import main
from newsfixtures import MIND, TOKENIZER

NEWS = ["naml", "lstur", "nrms", "plmnr", "bst", "dcn", "pnn", "din"]
IMPRESSION_KEYS = {"auc", "mrr", "ndcg@5", "ndcg@10", "new_auc", "warm_auc"}


def _params(name, plm_dir):
    out = ["--param", f"text={{tokenizer: {TOKENIZER}}}"]
    return out + (["--param", f"plm={plm_dir}"] if name == "plmnr" else [])


@pytest.mark.parametrize("name", NEWS)
def test_news_models_train_on_the_mind_fixture_and_report_impression_metrics(name, tiny_plm_dir, tmp_path, capsys):
    out = tmp_path / name
    code = main(["--cache-dir", str(tmp_path / "cache"), "train", "--model", name, "--dataset", str(MIND),
                 "--split", "impressions", "--epochs", "2",
                 "--no-progress", "--output-dir", str(out), *_params(name, tiny_plm_dir)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert IMPRESSION_KEYS <= set(metrics["test"]) and metrics["test"]["impressions"] == 3
    assert metrics["protocol"] == {"split": "impressions", "ranking": "impressions", "impressions": "logged",
                                   "new_user_history": 5}
    assert metrics["selection_metric"] == "auc"
    assert "| stage | auc |" in (out / "report.md").read_text()


@pytest.mark.parametrize("name", ["pop", "sasrec"])
def test_any_model_is_scored_on_the_same_impressions(name, block_dataset_dir, tmp_path, capsys):
    out = tmp_path / name
    code = main(["train", "--model", name, "--dataset", str(block_dataset_dir), "--protocol", "impressions",
                 "--epochs", "2", "--no-progress", "--output-dir", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert IMPRESSION_KEYS <= set(metrics["test"]) and "hit@10" not in metrics["test"]
    assert metrics["protocol"]["impressions"].startswith("constructed: 1 clicked + 24 uniform")
    assert "test auc=" in capsys.readouterr().err


def test_evaluate_switches_a_finished_run_to_impressions(block_dataset_dir, tmp_path, capsys):
    out = tmp_path / "bpr"
    assert main(["train", "--model", "bpr", "--dataset", str(block_dataset_dir), "--epochs", "2", "--no-progress",
                 "--output-dir", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--protocol", "impressions"]) == 0
    assert IMPRESSION_KEYS <= set(json.loads(capsys.readouterr().out)["test"])


def test_sasrec_on_the_mind_fixture_uses_the_logged_impressions(tmp_path, capsys):
    out = tmp_path / "sasrec"
    assert main(["train", "--model", "sasrec", "--dataset", str(MIND), "--split", "impressions", "--protocol",
                 "impressions", "--epochs", "1", "--no-progress", "--output-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["protocol"]["impressions"] == "logged"


def test_data_prepare_prints_the_table1_statistics_of_mind(capsys):
    assert main(["data", "prepare", "mind", "--path", str(MIND), "--tokenizer", str(TOKENIZER)]) == 0
    out = capsys.readouterr().out
    assert "| #news | 12 |" in out and "| #new user ratio | 0.83 |" in out and "tokens per title" in out


@pytest.mark.integration
def test_nrms_style_training_on_ml100k_writes_the_impression_metrics(ml100k_cache_dir, tmp_path, capsys):
    out = tmp_path / "dcn"
    code = main(["--cache-dir", str(ml100k_cache_dir), "train", "--model", "dcn", "--dataset", "ml-100k",
                 "--epochs", "1", "--threads", "1", "--no-progress", "--output-dir", str(out)])
    assert code == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert {"auc", "mrr", "ndcg@5", "ndcg@10"} <= set(test) and test["impressions"] == 943
    assert test["auc"] > 0.7
