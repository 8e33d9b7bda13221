"""The fine-tuned LLM tables' logic (genrecsys.stages.llm_finetune)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.stages import llm_finetune as lf


def _run(d, seed, auc_per_user):
    d.mkdir(parents=True)
    auc = float(np.mean(auc_per_user))
    test = {"auc": auc, "mrr": auc / 2, "ndcg@10": auc / 3}
    (d / "metrics.json").write_text(json.dumps({"model": "x", "dataset": "d", "protocol": "impressions", "seed": seed,
                                                "test": test, "valid": test, "train_seconds": 5.0, "epochs": 2}))
    pd.DataFrame({"stage": "test", "user": [f"u{i}" for i in range(len(auc_per_user))],
                  "auc": auc_per_user}).to_parquet(d / "per_user.parquet", index=False)
    return json.loads((d / "metrics.json").read_text())


def test_fewshot_table_pairs_every_row_with_sasrec_and_bpr_on_the_same_users(tmp_path):
    rows = lf.fewshot_rows([16], {})
    assert [r.label for r in rows][2:] == ["TALLRec k=0 (the prompted LLM)", "TALLRec k=16"]
    assert rows[2].params["finetune"] == "frozen" and rows[3].params["examples"] == 16
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.9, 40)
    shift = {rows[0].label: -0.05, rows[1].label: 0.0, rows[2].label: -0.2, rows[3].label: +0.03}
    runs = {r.label: [_run(tmp_path / r.slug / f"seed-{s}", s, np.clip(base + shift[r.label] + rng.normal(0, 0.01, 40), 0, 1))
                      for s in (1, 2)] for r in rows}
    table = lf.fewshot_table(tmp_path, rows, runs)
    tall = table[3]
    assert tall["label"] == "TALLRec k=16" and tall["seeds"] == [1, 2]
    assert tall["vs"]["SASRec (impressions)"]["diff"] == pytest.approx(0.03, abs=0.01)
    assert tall["vs"]["BPR (impressions)"]["diff"] == pytest.approx(0.08, abs=0.01)
    assert tall["vs"]["SASRec (impressions)"]["t_p"] < 1e-3
    assert "SASRec (impressions)" not in table[1]["vs"]  # the reference is not tested against itself
    md = lf.fewshot_markdown(table).splitlines()
    assert len(md) == 6 and md[5].startswith("| TALLRec k=16 |") and f"{tall['vs']['SASRec (impressions)']['diff']:+.4f}" in md[5]


def test_the_tables_pair_on_the_seeds_of_their_means_not_every_seed_directory(tmp_path):
    """A `--seeds 2` table over a runs directory a `--seeds 3` command filled: the mean is
    over seeds 1-2, so Δ and p must be too (they once came from all three)."""
    rows = lf.fewshot_rows([16], {})
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 0.9, 40)
    shift = {rows[0].label: -0.05, rows[1].label: 0.0, rows[2].label: -0.2, rows[3].label: +0.03}
    runs = {r.label: [_run(tmp_path / r.slug / f"seed-{s}", s,
                           np.clip(base + shift[r.label] * (-10 if s == 3 else 1) + rng.normal(0, 0.01, 40), 0, 1))
                      for s in (1, 2, 3)] for r in rows}
    two = {label: metrics[:2] for label, metrics in runs.items()}
    table = lf.fewshot_table(tmp_path, rows, two)
    tall = table[3]
    assert tall["seeds"] == [1, 2]
    assert tall["vs"]["SASRec (impressions)"]["diff"] == pytest.approx(0.03, abs=0.01)  # seed 3 would flip it
    assert tall["vs"]["BPR (impressions)"]["diff"] == pytest.approx(0.08, abs=0.01)
    assert lf.fewshot_table(tmp_path, rows, runs)[3]["vs"]["SASRec (impressions)"]["diff"] < 0


def test_tokens_per_epoch_counts_what_the_llm_is_fed(tiny_causal_lm_dir):
    """The throughput's numerator: tokens through the decoder in one training epoch."""
    split = leave_one_out(block_cycles())
    for name, params in (("llmsid", {"codes": "digits", "max_len": 8}),
                         ("llmsid", {"codes": "digits", "max_len": 8, "titles": 4, "align": 0.5, "align_items": 3}),
                         ("tallrec", {"examples": 12, "answers": ["item", "group"], "recent": 4}),
                         ("tallrec", {"examples": 0, "stride": 3, "answers": ["item", "group"], "recent": 4})):
        m = build_model(name, {"llm": str(tiny_causal_lm_dir), **params}, split)
        fed: list[int] = []

        def count(mod, args, kw, fed=fed, padded=name == "llmsid"):  # llmsid's windows: padding included
            mask = kw["attention_mask"]
            if padded:
                fed.append(int(mask.numel()))
            else:  # tallrec: real tokens, padding is id 0 ([PAD], never a word of a prompt)
                x = kw["inputs_embeds"]
                fed.append(int((x != mod.get_input_embeddings().weight[0]).any(-1).sum()))

        hook = m.decoder.register_forward_pre_hook(count, with_kwargs=True)
        with torch.no_grad():
            for batch in m.batches(split, 5, np.random.default_rng(0)):
                m.loss(batch)
        hook.remove()
        assert sum(fed) == lf.tokens_per_epoch(m, split, batch_size=5), (name, params)


def test_the_cost_probe_reports_throughput_and_projects_an_epoch(tiny_causal_lm_dir):
    split = leave_one_out(block_cycles())
    m = build_model("llmsid", {"llm": str(tiny_causal_lm_dir), "codes": "digits", "max_len": 8}, split)
    cost = lf.probe_cost(m, split, steps=2, batch_size=4, users=3)
    assert cost["tokens_per_epoch"] == lf.tokens_per_epoch(m, split) and cost["train_tokens_per_s"] > 0
    assert cost["epoch_hours"] == pytest.approx(cost["tokens_per_epoch"] / cost["train_tokens_per_s"] / 3600)
    assert cost["score_ms_per_user"] > 0 and cost["peak_rss_mb"] > 0 and 0 < cost["trainable_parameters"]
    tall = build_model("tallrec", {"llm": str(tiny_causal_lm_dir), "examples": 8, "answers": ["item", "group"]}, split)
    assert lf.probe_cost(tall, split, steps=1, batch_size=4, users=2)["eval_protocol"] == "impressions"
    # bfloat16: the probe's training steps under autocast, as train.precision trains
    autocast_seen = []
    loss = m.loss
    m.loss = lambda batch: (autocast_seen.append(torch.is_autocast_enabled("cpu")), loss(batch))[1]
    bf = lf.probe_cost(m, split, steps=1, batch_size=4, users=2, precision="bfloat16")
    assert bf["precision"] == "bfloat16" and bf["train_tokens_per_s"] > 0 and autocast_seen == [True, True]


def test_the_alignment_row_is_llmsid_with_the_tasks_on_in_its_own_run_directory():
    from genrecsys.stages.llm_finetune import retrieval_rows

    plain = retrieval_rows("codes", {"layers": 4})
    rows = retrieval_rows("codes", {"layers": 4}, align=0.5)
    assert rows[:3] == plain and len(plain) == 3
    assert rows[3].model == "llmsid" and rows[3].params == {"codes": "codes", "layers": 4, "align": 0.5}
    assert len({r.slug for r in rows}) == 4


def test_a_dropout_row_gets_its_own_label_and_run_directory_and_the_plain_labels_stay():
    from genrecsys.stages.llm_finetune import retrieval_rows

    plain = retrieval_rows("codes", {"layers": 4}, align=0.5, precision="bfloat16")
    dropped = retrieval_rows("codes", {"layers": 4, "lora_dropout": 0.1}, align=0.5, precision="bfloat16")
    inputs = retrieval_rows("codes", {"layers": 4, "dropout": 0.1}, align=0.5, precision="bfloat16")
    # the finished runs' directories (BENCHMARKS.md) keep their names
    assert [r.slug for r in plain[2:]] == ["llmsid-smollm2-135m-lora-bfloat16-training",
                                           "llmsid--lc-rec-alignment-0-5-bfloat16-training"]
    assert len({r.slug for r in plain[2:] + dropped[2:] + inputs[2:]}) == 6
    assert all(r.params["lora_dropout"] == 0.1 for r in dropped[2:])


def test_full_fine_tuning_another_lora_rank_and_titles_get_their_own_run_directories():
    """--finetune full / --lora-r 32 / --titles 4 in a runs directory that holds the LoRA r 8 rows
    must train new rows, not reuse those (the labels once said "LoRA" for every mode)."""
    from genrecsys.stages.llm_finetune import retrieval_rows

    kinds = [{}, {"finetune": "lora", "lora_r": 8}, {"finetune": "full", "lora_r": 8}, {"finetune": "lora", "lora_r": 32},
             {"finetune": "frozen"}, {"finetune": "full", "titles": 4}, {"titles": 0}]
    slugs = [[r.slug for r in retrieval_rows("codes", {"layers": 4, **k}, align=0.5, precision="bfloat16")[2:]]
             for k in kinds]
    assert slugs[0] == slugs[1] == slugs[6] == ["llmsid-smollm2-135m-lora-bfloat16-training",
                                                "llmsid--lc-rec-alignment-0-5-bfloat16-training"]
    assert len({s for row in slugs[1:6] for s in row}) == 10
    assert slugs[2] == ["llmsid-smollm2-135m-full-fine-tuning-bfloat16-training",
                        "llmsid--lc-rec-alignment-0-5-full-fine-tuning-bfloat16-training"]


def _ranking_run(d, seed, ndcg_per_user):
    d.mkdir(parents=True)
    ndcg = float(np.mean(ndcg_per_user))
    test = {m: ndcg for m in ("hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10", "longtail_ndcg@10")}
    (d / "metrics.json").write_text(json.dumps({"model": "x", "dataset": "d", "protocol": "loo", "seed": seed,
                                                "test": test, "valid": test, "seconds_per_epoch": 2.0,
                                                "train_seconds": 10.0, "epochs": 3}))
    pd.DataFrame({"stage": "test", "user": [f"u{i}" for i in range(len(ndcg_per_user))],
                  "ndcg@10": ndcg_per_user}).to_parquet(d / "per_user.parquet", index=False)
    return json.loads((d / "metrics.json").read_text())


def test_the_retrieval_table_tests_the_llm_rows_against_tiger_as_well_as_sasrec(tmp_path):
    from genrecsys.stages import generative as g

    rows = lf.retrieval_rows("codes", {"layers": 4}, align=0.5, precision="bfloat16")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.0, 0.3, 50)
    shift = dict(zip([r.label for r in rows], (0.04, 0.0, -0.02, 0.01)))  # SASRec, TIGER, llmsid, + alignment
    runs = {r.label: [_ranking_run(tmp_path / r.slug / "seed-1", 1, base + shift[r.label] + rng.normal(0, 0.002, 50))]
            for r in rows}
    table = lf.retrieval_table(tmp_path, rows, runs, {}, {"rkmeans": {"stats": {"collision_rate": 0.5}}})
    assert "vs_sasrec" not in table[0] and "vs_tiger" not in table[1]  # no reference is tested against itself
    assert table[1]["vs_sasrec"]["diff"] == pytest.approx(-0.04, abs=0.002)
    assert table[2]["vs_tiger"]["diff"] == pytest.approx(-0.02, abs=0.002) and table[2]["vs_tiger"]["t_p"] < 1e-6
    assert table[3]["vs_tiger"]["diff"] == pytest.approx(0.01, abs=0.002)
    md = g.markdown(table, lf.RETRIEVAL_REFERENCES).splitlines()
    assert md[0].count("p (t / Wilcoxon)") == 2 and "Δ NDCG@10 vs TIGER" in md[0]
    cells = [line.strip("| ").split(" | ") for line in md[2:]]  # SASRec, TIGER, llmsid, + alignment
    assert cells[3][-2] == f"{table[3]['vs_tiger']['diff']:+.4f}" and cells[3][-4] == f"{table[3]['vs_sasrec']['diff']:+.4f}"
    assert cells[0][-4:] == ["–"] * 4 and "–" not in cells[1][-4:-2] and cells[1][-2:] == ["–", "–"]


def test_probe_models_measures_each_model_in_each_precision_side_by_side(tiny_causal_lm_dir):
    split = leave_one_out(block_cycles())
    models = {"llmsid": ("llmsid", {"llm": str(tiny_causal_lm_dir), "codes": "digits", "max_len": 8}),
              "tallrec": ("tallrec", {"llm": str(tiny_causal_lm_dir), "examples": 8, "answers": ["item", "group"]})}
    out = lf.probe_models(split, models, steps=1, precisions=("float32", "bfloat16"), batch_size=4)
    assert list(out) == ["llmsid", "llmsid-bfloat16", "tallrec", "tallrec-bfloat16"]
    assert [out[k]["precision"] for k in out] == ["float32", "bfloat16"] * 2
    assert out["tallrec"]["eval_protocol"] == "impressions" and out["llmsid"]["eval_protocol"] != "impressions"


def test_the_benchmark_refuses_a_bad_dropout_in_one_line_before_training_anything(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_finetune.py"
    r = subprocess.run([sys.executable, str(script), "--dropout", "1.5", "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith(
        "--dropout and --lora-dropout must be in [0, 1), got 1.5 and 0.0")
    assert not (tmp_path / "runs").exists()


def test_the_curve_trains_k_all_under_its_own_epoch_cap(monkeypatch):
    from genrecsys.config import TrainConfig
    from genrecsys.stages import generative as g

    calls = []
    monkeypatch.setattr(g, "train_rows", lambda rows, runs_dir, seeds, train, cache_dir=None, jobs=1:
                        calls.append(([r.label for r in rows], train.epochs)) or {r.label: [] for r in rows})
    rows = lf.fewshot_rows([16, 0], {})
    out = lf.train_fewshot(rows, "runs", 1, TrainConfig(epochs=300), TrainConfig(epochs=10), all_epochs=2)
    assert calls == [(["BPR (impressions)", "SASRec (impressions)"], 300),
                     (["TALLRec k=0 (the prompted LLM)", "TALLRec k=16"], 10), (["TALLRec k=all (stride 10)"], 2)]
    assert list(out) == [r.label for r in rows]
    calls.clear()
    lf.train_fewshot(rows, "runs", 1, TrainConfig(epochs=300), TrainConfig(epochs=10))
    assert calls[-1] == (["TALLRec k=all (stride 10)"], 10)


def test_the_benchmark_refuses_a_bad_stride_or_rerank_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_finetune.py"
    r = subprocess.run([sys.executable, str(script), "--stride", "0", "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--stride and --probe-strides must be >= 1" in r.stderr.strip().splitlines()[-1]
    r = subprocess.run([sys.executable, str(script), "--rerank", "-1", "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--rerank must be >= 0, got -1" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()


def test_rows_are_chosen_by_label_directory_or_model_and_an_unknown_name_is_one_line():
    from genrecsys.errors import GenrecsysError

    rows = lf.retrieval_rows("codes", {}, precision="bfloat16") + lf.fewshot_rows([16], {})
    assert [r.label for r in lf.select_rows(rows, ["tiger", "llmsid-smollm2-135m-lora-bfloat16-training"])] == [
        "TIGER (residual k-means)", "llmsid (SmolLM2-135M, LoRA, bfloat16 training)"]
    assert [r.label for r in lf.select_rows(rows, ["SASRec (impressions)", "tallrec"])] == [
        "SASRec (impressions)", "TALLRec k=0 (the prompted LLM)", "TALLRec k=16"]
    assert lf.select_rows(rows, None) == rows and lf.select_rows(rows, ["tigr"], strict=False) == []
    with pytest.raises(GenrecsysError, match=r"^--rows: no row is 'tigr'; the rows are 'SASRec', 'TIGER"):
        lf.select_rows(rows, ["tiger", "tigr"])


def test_a_retrieval_table_of_some_rows_tests_against_the_references_it_has(tmp_path):
    rows = lf.retrieval_rows("codes", {"layers": 4})
    rng = np.random.default_rng(1)
    base = rng.uniform(0.0, 0.3, 50)
    runs = {r.label: [_ranking_run(tmp_path / r.slug / "seed-1", 1, base + d + rng.normal(0, 0.002, 50))]
            for r, d in zip(rows, (0.04, 0.0, -0.02))}
    codes = {"rkmeans": {"stats": {"collision_rate": 0.5}}}
    no_sasrec = lf.retrieval_table(tmp_path, rows[1:], {k: runs[k] for k in (rows[1].label, rows[2].label)}, {}, codes)
    assert "vs_sasrec" not in no_sasrec[1] and no_sasrec[1]["vs_tiger"]["diff"] == pytest.approx(-0.02, abs=0.002)
    no_tiger = lf.retrieval_table(tmp_path, rows[::2], {k: runs[k] for k in (rows[0].label, rows[2].label)}, {}, codes)
    assert "vs_tiger" not in no_tiger[1] and no_tiger[1]["vs_sasrec"]["diff"] == pytest.approx(-0.06, abs=0.002)


def test_the_benchmark_refuses_an_unknown_row_in_one_line_before_training_anything(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_finetune.py"
    r = subprocess.run([sys.executable, str(script), "--parts", "fewshot", "--rows", "tiger", "--runs-dir",
                        str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--rows: no row is 'tiger'; the rows are 'BPR (impressions)'" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_trained_tallrec_runs_are_scored_as_rerankers_of_the_same_seeds_sasrec(tmp_path, block_dataset_dir,
                                                                                tiny_causal_lm_dir, monkeypatch):
    """The re-ranking table: each seed's trained TALLRec run (no retraining) re-ranks that
    seed's SASRec top N on full ranking; its figures are what the trained model scores with
    the retriever attached, kept as a run directory and tested per user against SASRec."""
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.experiment import load_run, run_experiment
    from genrecsys.train.loop import evaluate

    runs = tmp_path / "runs"
    data = DataConfig(dataset=str(block_dataset_dir))
    tallrec = {"llm": str(tiny_causal_lm_dir), "answers": ["item", "group"], "recent": 4}
    rows = lf.fewshot_rows([8], tallrec)
    seeds = (0, 1)
    for seed in seeds:  # what the curve and the retrieval part leave in the runs directory (tiny data here)
        train = TrainConfig(epochs=2, progress=False, seed=seed)
        run_experiment(ExperimentConfig(model="sasrec", data=data, train=train), runs / "sasrec" / f"seed-{seed}")
        for r in rows[2:]:
            cfg = ExperimentConfig(model="tallrec", model_params=r.params, data=data, train=train)
            cfg.eval.protocol = "impressions"
            run_experiment(cfg, runs / r.slug / f"seed-{seed}")
    rerank, results = lf.rerank_fewshot(rows, runs, len(seeds), TrainConfig(epochs=2, progress=False, seed=0),
                                        candidates=5, data=data)
    assert [r.label for r in rerank] == ["SASRec", "TALLRec k=0 (the prompted LLM) re-ranking SASRec's top 5",
                                         "TALLRec k=8 re-ranking SASRec's top 5"]
    k8 = results[rerank[2].label]
    assert [m["seed"] for m in k8] == list(seeds) and k8[0]["protocol"]["ranking"] == "full" and k8[0]["valid"] == {}
    # seed 1's figures are the seed-1 TALLRec re-ranking the seed-1 SASRec, evaluated directly
    cfg, split, model = load_run(runs / rows[3].slug / "seed-1", None,
                                 {"retriever": str(runs / "sasrec" / "seed-1"), "candidates": 5})
    cfg.eval.protocol = "full"
    direct = evaluate(model, split, "test", cfg.eval, cfg.data.max_seq_len).metrics
    assert k8[1]["test"]["ndcg@10"] == pytest.approx(direct["ndcg@10"])
    assert k8[1]["test"]["hit@10"] == pytest.approx(direct["hit@10"])
    assert k8[1]["train_seconds"] == json.loads((runs / rows[3].slug / "seed-1" / "metrics.json").read_text())["train_seconds"]
    # the LLM orders SASRec's top 5 only: the top 10 holds the same items, so HR@10 is SASRec's
    for seed, m in zip(seeds, k8):
        sasrec = json.loads((runs / "sasrec" / f"seed-{seed}" / "metrics.json").read_text())["test"]
        assert m["test"]["hit@10"] == pytest.approx(sasrec["hit@10"]) and m["test"]["hit@1"] <= sasrec["hit@5"]
    table = lf.rerank_table(runs, rerank, results)
    assert table[0]["label"] == "SASRec" and "vs_sasrec" not in table[0]
    assert table[2]["vs_sasrec"]["diff"] == pytest.approx(
        np.mean([m["test"]["ndcg@10"] for m in k8]) - table[0]["test"]["ndcg@10"], abs=1e-9)
    # a second call reuses every directory: nothing is evaluated again
    import genrecsys.train.loop as loop

    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("evaluated again")))
    again = lf.rerank_fewshot(rows, runs, len(seeds), TrainConfig(epochs=2, progress=False, seed=0), candidates=5,
                              data=data)[1]
    assert again[rerank[2].label] == k8


def test_evaluate_writes_a_rerank_run_directory_that_compare_reads(tmp_path, block_dataset_dir, tiny_causal_lm_dir,
                                                                    capsys):
    from genrecsys.cli.main import main
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.experiment import run_experiment

    data = DataConfig(dataset=str(block_dataset_dir))
    train = TrainConfig(epochs=1, progress=False, seed=0)
    run_experiment(ExperimentConfig(model="sasrec", data=data, train=train), tmp_path / "sasrec")
    cfg = ExperimentConfig(model="tallrec", data=data, train=train,
                           model_params={"llm": str(tiny_causal_lm_dir), "answers": ["item", "group"], "recent": 4,
                                         "examples": 8})
    run_experiment(cfg, tmp_path / "tallrec")
    out = tmp_path / "tallrec-rerank"
    assert main(["evaluate", str(tmp_path / "tallrec"), "--protocol", "full", "--param",
                 f"retriever={tmp_path / 'sasrec'}", "--param", "candidates=5", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip().endswith(str(out)) and '"ndcg@10"' in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["protocol"]["ranking"] == "full" and saved["eval_params"] == {"retriever": str(tmp_path / "sasrec"),
                                                                               "candidates": 5}
    assert main(["compare", str(tmp_path / "sasrec"), str(out), "--metric", "ndcg@10"]) == 0
    assert "ndcg@10" in capsys.readouterr().out
    # a run directory holds the run's own metrics only: one line, nothing written
    assert main(["evaluate", str(tmp_path / "tallrec"), "--sampled", "--output-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "drop --sampled" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    assert main(["evaluate", str(tmp_path), "--output-dir", str(tmp_path / "x")]) == 2  # not a run
    err = capsys.readouterr().err
    assert "not a finished run (no metrics.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_throughput_of_a_run_kept_without_weights(block_dataset_dir, tiny_causal_lm_dir, tmp_path):
    """A reused row from committed evidence has no model.pt: its tokens per epoch come from its
    config, the same as while its weights were there (the table step crashed on such a row)."""
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.errors import GenrecsysError
    from genrecsys.experiment import load_run, run_experiment

    run = tmp_path / "llmsid" / "seed-0"
    params = {"llm": str(tiny_causal_lm_dir), "codes": "digits", "max_len": 8, "align": 0.5, "align_items": 3}
    run_experiment(ExperimentConfig(model="llmsid", model_params=params, data=DataConfig(dataset=str(block_dataset_dir)),
                                    train=TrainConfig(epochs=1, progress=False, seed=0)), run)
    with_weights = lf.llm_throughput(run)
    (run / "model.pt").unlink()
    assert lf.llm_throughput(run) == with_weights and with_weights["tokens_per_epoch"] > 0
    with pytest.raises(GenrecsysError, match="no model.pt"):
        load_run(run)
    (run / "config.yaml").unlink()
    with pytest.raises(GenrecsysError, match="no config.yaml"):
        load_run(run, weights=False)
