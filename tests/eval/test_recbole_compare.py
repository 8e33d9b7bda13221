"""SASRec vs RecBole on both rules (genrecsys.stages.peers): the masks the RecBole driver
applies, the genrecsys side selecting once per rule, and the report."""
from __future__ import annotations

import ast
import json

import numpy as np

from genrecsys.config import DataConfig, load_experiment
from genrecsys.stages.peers import (RULES, both_rules_table, comparison_report, genrecsys_sasrec_both_rules,
                                    recbole_driver, seen_masks)


def test_seen_masks_hold_training_items_for_valid_and_training_plus_valid_for_test():
    # user 1 saw items 1, 2, 3 (train), then 4 (valid target), then 5 (test target); user 2: 2, then 3, then 1
    users = [1, 1, 1, 1, 1, 2, 2, 2]
    items = [1, 2, 3, 4, 5, 2, 3, 1]
    valid_seen, test_seen = seen_masks(users, items, [1, 2], [4, 3], [1, 2], [5, 1], n_users=3, n_items=6)
    assert valid_seen.shape == test_seen.shape == (3, 6)
    assert np.flatnonzero(valid_seen[1]).tolist() == [1, 2, 3]
    assert np.flatnonzero(test_seen[1]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(valid_seen[2]).tolist() == [2]
    assert np.flatnonzero(test_seen[2]).tolist() == [2, 3]
    assert not valid_seen[0].any() and not test_seen[:, 0].any()  # padding user / item never masked


def test_driver_carries_the_tested_mask_function_and_parses():
    src = recbole_driver()
    tree = ast.parse(src)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"seen_masks", "masked_full_sort_predict", "timed_valid", "save_checkpoint"} <= names
    assert "__SEEN_MASKS__" not in src


def test_genrecsys_side_selects_once_per_rule_and_tests_on_both(block_dataset_dir, tmp_path):
    out = genrecsys_sasrec_both_rules(tmp_path, threads=1, epochs=2, data=DataConfig(dataset=str(block_dataset_dir)))
    assert set(out["rules"]) == set(RULES)
    for rule in RULES:
        r = out["rules"][rule]
        cfg = load_experiment(tmp_path / f"select-{rule}" / "config.yaml")
        assert cfg.eval.mask_seen == (rule == "masked")
        assert r["epochs"] == 2 and len(r["history"]) == 2 and 0 <= r["best_epoch"] < 2
        metrics = json.loads((tmp_path / f"select-{rule}" / "metrics.json").read_text())
        assert r["test"]["ndcg@10"] == metrics["test"]["ndcg@10"]
    # The other-rule figure of each run is the other rule's evaluation of that run's checkpoint: with the
    # same seed and 2 epochs both runs keep the same checkpoint when their best epochs agree.
    m, u = out["rules"]["masked"], out["rules"]["unmasked"]
    if m["best_epoch"] == u["best_epoch"]:
        assert abs(m["test_other_rule"]["ndcg@10"] - u["test"]["ndcg@10"]) < 1e-9
        assert abs(u["test_other_rule"]["ndcg@10"] - m["test"]["ndcg@10"]) < 1e-9
    assert out["config"]["patience"] >= 1 and out["data"]["users"] > 0


def _side(ndcg: float, best: int, seconds: float) -> dict:
    test = {"hit@10": 2 * ndcg, "ndcg@10": ndcg, "mrr@10": ndcg / 2}
    return {"best_epoch": best, "seconds_to_best": seconds, "valid": {"ndcg@10": ndcg + 0.01}, "test": test,
            "test_other_rule": {"ndcg@10": ndcg / 2}, "epochs": best + 11}


def test_report_puts_both_rules_side_by_side():
    rb = {"rules": {"masked": _side(0.10, 30, 3000.0), "unmasked": _side(0.07, 27, 2700.0)}, "epochs_run": 41,
          "capped": False, "train_seconds": 4000.0, "valid_seconds": 100.0, "peak_rss_mb": 1200.0, "torch_threads": 2,
          "anomaly_detection_during_training": False, "n_parameters": 200_000,
          "versions": {"recbole": "1.2.1", "python": "3.11", "torch": "2.13", "numpy": "1.23.5", "pandas": "2.2"},
          "data": {"users": 943, "items": 1682, "interactions": 100_000, "train_samples": 97_000, "data_path": "x"},
          "config": {"train_batch_size": 256, "learning_rate": 1e-3, "hidden_size": 64, "n_layers": 2, "n_heads": 2,
                     "inner_size": 256, "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "loss_type": "CE",
                     "MAX_ITEM_LIST_LENGTH": 50},
          "process": {"wall_seconds": 4200.0, "cpus_used": 1.9, "other_processes_cpus": 0.05}}
    gm, gu = _side(0.11, 20, 60.0), _side(0.065, 25, 75.0)
    for side in (gm, gu):
        side.update(seconds_per_epoch=2.5, train_seconds_per_epoch=2.3, n_parameters=150_000)
    gr = {"rules": {"masked": gm, "unmasked": gu}, "torch_threads": 2, "peak_rss_mb": 800.0,
          "versions": {"genrecsys": "0.x", "git": "abc", "python": "3.11", "torch": "2.13", "numpy": "2", "pandas": "2"},
          "data": {"users": 943, "items": 1682, "interactions": 100_000},
          "config": {"batch_size": 128, "lr": 1e-3, "max_seq_len": 50,
                     "model_params": {"embedding_size": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.2}},
          "process": {"wall_seconds": 140.0, "cpus_used": 1.9, "other_processes_cpus": 0.9}}
    env = {"cpu": "x86", "cpus": 2, "load_at_start": "0.1", "venv": "/tmp/v", "same_torch": True}
    text, summary = comparison_report(env, rb, gr, threads=2, recbole_epochs=0, genrecsys_epochs=None)
    table = both_rules_table(rb, gr)
    assert table in text
    assert "|  | test NDCG@10 | 0.0700 | 0.0650 | -0.0050 |" in table  # RecBole ahead on its own rule: shown as such
    assert "|  | test NDCG@10 | 0.1000 | 0.1100 | +0.0100 |" in table
    assert "RecBole / genrecsys 50.0×" in table and "RecBole / genrecsys 36.0×" in table
    assert "CPU seconds" not in table  # only when the driver recorded them
    rb["rules"]["masked"]["cpu_seconds_to_best"] = 1500.0
    assert "| 1,500 |  | RecBole / genrecsys 25.0× |" in both_rules_table(rb, gr)
    assert "WARNING: the machine was not idle" in text and "genrecsys 0.90" in text
    assert "PROJECTION" not in text
    assert summary["rules"]["unmasked"]["test_ndcg10"] == {"recbole": 0.07, "genrecsys": 0.065}
    assert abs(summary["ratio_s_per_epoch"] - (4100.0 / 41) / 2.5) < 1e-9
