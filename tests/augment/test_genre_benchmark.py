"""The GENRE tables (``genrecsys.stages.genre_tables``, run by benchmarks/genre.py): Table 8's
arithmetic (cost, improvement, cost conversion rate) from manifests and AUCs, the honest
marking of differences that are not significant, training the runs over processes, and
tables that grow from earlier ones."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from genrecsys.errors import GenrecsysError

from augmentdata import news_dir  # noqa: F401  (fixture)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "genre.py"


@pytest.fixture(scope="module")
def genre():
    from genrecsys.stages import genre_tables

    return genre_tables


@pytest.fixture(scope="module")
def bench():
    """The command line over the module."""
    spec = importlib.util.spec_from_file_location("genre_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses / doctest lookups need the module registered
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


MANIFESTS = {
    "NS": {"prompt_tokens": 2_000_000, "completion_tokens": 100_000, "cost_total": 1.15, "rows": 1682},
    "NG": {"prompt_tokens": 400_000, "completion_tokens": 200_000, "cost_total": 0.0, "rows": 378},
}
AUC = {"ORI": {"nrms": 0.6000, "naml": 0.6100, "bst": 0.5900},
       "NS": {"nrms": 0.6150, "naml": 0.6200, "bst": 0.5850},
       "NG": {"nrms": 0.6050, "naml": 0.6100}}


def test_table8_takes_cost_from_the_manifest_and_improvement_in_auc_points(genre):
    rows = {r["variant"]: r for r in genre.cost_rows(MANIFESTS, AUC, None, matching=("nrms", "naml"), ranking=("bst",))}
    ns = rows["NS"]
    assert ns["cost"] == 1.15 and ns["prompt_tokens"] == 2_000_000 and ns["rows"] == 1682
    assert ns["imp_matching"] == pytest.approx((1.5 + 1.0) / 2)  # mean over the family, in AUC points
    assert ns["ccr_matching"] == pytest.approx(100 * 1.25 / 1.15)  # GENRE: CCR (%) = 100 x Imp. / cost
    assert ns["imp_ranking"] == pytest.approx(-0.5) and ns["ccr_ranking"] == pytest.approx(100 * -0.5 / 1.15)
    # a free (local) model: the improvement stands, the rate is undefined rather than infinite
    assert rows["NG"]["imp_matching"] == pytest.approx(0.25) and rows["NG"]["ccr_matching"] is None
    assert rows["NG"]["imp_ranking"] is None  # no ranking model was trained on NG


def test_table8_prices_tokens_at_a_list_price_when_asked(genre):
    rows = {r["variant"]: r for r in genre.cost_rows(MANIFESTS, AUC, (0.5, 1.5), matching=("nrms",), ranking=())}
    assert rows["NS"]["cost"] == pytest.approx((2_000_000 * 0.5 + 100_000 * 1.5) / 1e6)
    assert rows["NG"]["cost"] == pytest.approx(0.5) and rows["NG"]["ccr_matching"] == pytest.approx(100 * 0.5 / 0.5)


def test_differences_that_are_not_significant_say_so(genre):
    assert "n.s." in genre.significance_mark({"mean_diff": 0.02, "t_pvalue": 0.2})
    assert "n.s." not in genre.significance_mark({"mean_diff": 0.02, "t_pvalue": 0.001})
    assert "no test" in genre.significance_mark({"mean_diff": 0.0, "t_pvalue": float("nan")})


def test_seed_level_test_sees_training_noise_that_the_impression_test_cannot(genre):
    noisy = genre.seed_test([0.870, 0.880, 0.875, 0.866, 0.884], [0.874, 0.882, 0.879, 0.870, 0.887])
    assert noisy["mean_diff"] == pytest.approx(0.0034) and noisy["t_pvalue"] > 0.05  # within the seed spread
    clear = genre.seed_test([0.870, 0.871, 0.869, 0.870, 0.872], [0.890, 0.891, 0.889, 0.892, 0.890])
    assert clear["t_pvalue"] < 1e-6
    assert genre.seed_test([0.87], [0.88])["t_pvalue"] != genre.seed_test([0.87], [0.88])["t_pvalue"]  # NaN: one seed


def test_seed_level_test_compares_variants_on_the_users_both_evaluate(genre, tmp_path):
    import pandas as pd

    args = genre.GenreTables(runs_dir=str(tmp_path), seeds=2)
    rows = {"ORI": {"a": 0.9, "b": 0.5, "gone": 0.1}, "UP→NG": {"a": 0.8, "b": 0.6}}  # UP→NG dropped a user
    for name, values in rows.items():
        for seed, shift in ((2020, 0.0), (2021, 0.02)):
            d = tmp_path / genre.VARIANTS[name][0] / "dcn" / f"seed-{seed}"
            d.mkdir(parents=True)
            pd.DataFrame([{"stage": "test", "user": u, "auc": v + shift} for u, v in values.items()]
                         + [{"stage": "valid", "user": "a", "auc": 0.0}]).to_parquet(d / "per_user.parquet")
    r = genre.seed_pair(args, "ORI", "UP→NG", "dcn")
    assert r["mean_diff"] == pytest.approx(0.0)  # (0.8 + 0.6) / 2 − (0.9 + 0.5) / 2: "gone" is not counted
    assert genre.seed_pair(args, "ORI", "UP→NG", "dcn", users={"a"})["mean_diff"] == pytest.approx(-0.1)


def test_table10_plot_keeps_small_differences_visible_beside_a_collapse(genre, tmp_path):
    lo, hi = genre.delta_limits([0.004, -0.007, -0.26, float("nan")])
    assert lo == -hi and 0.007 < hi < 0.01  # UP→NG's −0.26 does not set the scale
    assert genre.delta_limits([]) == (-0.0115, 0.0115)
    tests = {"NS": [{"mean_diff": 0.002, "ci_low": -0.001, "ci_high": 0.005}] * 2,
             "UP→NG": [{"mean_diff": -0.26, "ci_low": -0.3, "ci_high": -0.2}] * 2}
    genre._delta_plot(["dcn", "pnn"], tests, tmp_path / "table10.png")
    assert (tmp_path / "table10.png").stat().st_size > 0


def test_parallel_jobs_train_each_missing_run_once_and_match_a_sequential_run(genre, news_dir, tmp_path, monkeypatch):
    import shutil

    from newsfixtures import news_params

    variants = tmp_path / "variants"
    shutil.copytree(news_dir, variants / "ori")
    monkeypatch.setitem(genre.MODEL_PARAMS, "ORI", news_params("nrms", None))  # the tiny test tokenizer

    def args(runs: str, jobs: int) -> genre.GenreTables:
        return genre.GenreTables(variants_dir=str(variants), runs_dir=str(tmp_path / runs), threads=1, device="cpu",
                                  cache_dir=str(tmp_path / "cache"), patience=3, max_epochs=2, lr=None, seeds=2,
                                  jobs=jobs)

    pairs = [("ORI", "nrms")]
    par, seq = args("par", 2), args("seq", 1)
    assert genre.missing_runs(par, pairs) == [("ORI", "nrms", 2020), ("ORI", "nrms", 2021)]
    genre.train_missing(par, pairs)  # two worker processes
    assert genre.missing_runs(par, pairs) == []
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "par").rglob("metrics.json")}
    genre.train_missing(par, pairs)  # nothing left to train
    genre.train_missing(seq, pairs)  # one job: left to train(), in this process
    assert len(genre.missing_runs(seq, pairs)) == 2
    a, b = genre.train(par, "ORI", "nrms"), genre.train(seq, "ORI", "nrms")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "par").rglob("metrics.json")} == done  # reused
    assert a["test"] == b["test"] and a["seeds"] == b["seeds"] == [2020, 2021]


def test_a_seed_another_process_trains_is_left_to_it_and_awaited(genre, news_dir, tmp_path, monkeypatch,
                                                                  other_process):
    import shutil

    from newsfixtures import news_params

    from genrecsys.experiment import run_experiment

    shutil.copytree(news_dir, tmp_path / "variants" / "ori")
    monkeypatch.setitem(genre.MODEL_PARAMS, "ORI", news_params("nrms", None))
    args = genre.GenreTables(variants_dir=str(tmp_path / "variants"), runs_dir=str(tmp_path / "runs"), threads=1,
                              device="cpu", cache_dir=str(tmp_path / "cache"), patience=3, max_epochs=1, lr=None,
                              seeds=2, jobs=1)
    theirs = genre.seed_dir(args, "ORI", "nrms", 2020)
    other_process.hold(theirs)  # the other process is training seed 2020
    slept, published = [], []

    def other_finishes(seconds):
        # seed 2021 was trained meanwhile; now the other process publishes 2020 and exits
        assert (genre.seed_dir(args, "ORI", "nrms", 2021) / "metrics.json").is_file()
        assert not (theirs / "metrics.json").exists()
        run_experiment(genre.experiment_config(args, "ORI", "nrms", 2020), tmp_path / "elsewhere",
                       cache_dir=args.cache_dir)
        shutil.copytree(tmp_path / "elsewhere", theirs)
        published.append((theirs / "metrics.json").stat().st_mtime_ns)
        other_process.kill()
        slept.append(seconds)

    monkeypatch.setattr(genre.time, "sleep", other_finishes)
    r = genre.train(args, "ORI", "nrms", wait_s=5.0)
    assert slept == [5.0] and r["seeds"] == [2020, 2021]
    assert [(theirs / "metrics.json").stat().st_mtime_ns] == published  # taken as it was, not retrained
    assert genre.missing_runs(args, [("ORI", "nrms")]) == []


def test_train_command_trains_what_is_free_before_it_waits_for_another_process(genre, bench, news_dir, tmp_path,
                                                                              monkeypatch, other_process, capsys):
    import json
    import shutil

    from newsfixtures import news_params

    from genrecsys.experiment import run_experiment

    shutil.copytree(news_dir, tmp_path / "variants" / "ori")
    monkeypatch.setitem(genre.MODEL_PARAMS, "ORI", news_params("nrms", None))
    monkeypatch.setitem(genre.MODEL_PARAMS, "UP∅", {"interest_fusion": True, **news_params("nrms", None)})
    argv = ["train", "--variants-dir", str(tmp_path / "variants"), "--runs-dir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res"), "--seeds", "1",
            "--max-epochs", "1", "--variants", "ORI", "UP∅", "--models", "nrms"]
    ori = tmp_path / "runs" / "ori" / "nrms" / "seed-2020"
    other_process.hold(ori)  # the same command, started first elsewhere, is training ORI
    theirs = genre.GenreTables(variants_dir=str(tmp_path / "variants"), threads=1, device="cpu", patience=3,
                                max_epochs=1, lr=None)

    def other_finishes(seconds):
        assert (tmp_path / "runs" / "up-empty" / "nrms" / "seed-2020" / "metrics.json").is_file()  # done meanwhile
        cfg = genre.experiment_config(theirs, "ORI", "nrms", 2020)
        run_experiment(cfg, tmp_path / "elsewhere", cache_dir=str(tmp_path / "cache"))
        shutil.copytree(tmp_path / "elsewhere", ori)
        other_process.kill()

    monkeypatch.setattr(genre.time, "sleep", other_finishes)
    bench.main(argv)
    trained = sorted(p.parent.parent.parent.name for p in (tmp_path / "runs").rglob("metrics.json"))
    assert trained == ["ori", "up-empty"]  # only the variants asked for (no other ORI-based ones)
    out = json.loads((tmp_path / "res" / "train.json").read_text())
    assert out["pairs"] == [["ORI", "nrms"], ["UP∅", "nrms"]] and "| UP∅ | nrms | 1 |" in out["markdown"]
    assert capsys.readouterr().err.count("left to the other process") == 1  # said once, not once per pass


def test_fusion_control_is_ori_with_empty_profiles_and_trains_like_up(genre, news_dir, tmp_path, monkeypatch):
    import shutil

    from newsfixtures import news_params

    from genrecsys.data.load import load_dataset
    from genrecsys.data.profiles import user_profiles
    from genrecsys.data.splits import leave_one_out

    variants = tmp_path / "variants"
    shutil.copytree(news_dir, variants / "ori")
    args = genre.GenreTables(variants_dir=str(variants), runs_dir=str(tmp_path / "runs"), threads=1, device="cpu",
                              cache_dir=str(tmp_path / "cache"), patience=3, max_epochs=1, lr=None, seeds=1, jobs=1)
    path = genre.variant_dir(args, "UP∅")  # built from ORI on first use, no LLM
    ori, control = load_dataset(str(variants / "ori")), load_dataset(str(path))
    assert path == variants / "up-empty" and control.name != ori.name
    assert control.interactions.equals(ori.interactions) and control.items.equals(ori.items)
    assert control.users["topics"].isna().all() and control.users["regions"].isna().all()
    p = user_profiles(leave_one_out(control))
    assert p.n_topics == p.n_regions == 0 and not p.topics.any() and not p.regions.any()
    assert genre.experiment_config(args, "UP∅", "nrms").model_params == {"interest_fusion": True}  # UP's model
    monkeypatch.setitem(genre.MODEL_PARAMS, "UP∅", {"interest_fusion": True, **news_params("nrms", None)})
    r = genre.train(args, "UP∅", "nrms")
    assert 0.0 <= r["test"]["auc"] <= 1.0
    with pytest.raises(GenrecsysError, match="no such variant"):
        genre.variant_dir(args, "NS")  # an LLM variant is never made up


def test_a_failing_parallel_run_stops_the_command_with_its_error(genre, news_dir, tmp_path):
    import shutil

    shutil.copytree(news_dir, tmp_path / "variants" / "ori")
    args = genre.GenreTables(variants_dir=str(tmp_path / "variants"), runs_dir=str(tmp_path / "runs"), threads=1,
                              device="cpu", cache_dir=str(tmp_path / "cache"), patience=3, max_epochs=1, lr=None,
                              seeds=2, jobs=2)
    with pytest.raises(GenrecsysError, match="no-such-model"):
        genre.train_missing(args, [("ORI", "no-such-model")])  # raised in a worker, re-raised here
    assert genre.missing_runs(args, [("ORI", "no-such-model")]) == [("ORI", "no-such-model", 2020),
                                                                   ("ORI", "no-such-model", 2021)]


def test_table10_copies_other_models_of_an_earlier_table_and_its_copies_only_under_the_same_protocol(
        genre, bench, news_dir, tmp_path, monkeypatch):
    import json
    import shutil

    from newsfixtures import news_params

    shutil.copytree(news_dir, tmp_path / "variants" / "ori")
    monkeypatch.setitem(genre.MODEL_PARAMS, "ORI", news_params("nrms", None))
    monkeypatch.setitem(genre.MODEL_PARAMS, "UP∅", {"interest_fusion": True, **news_params("nrms", None)})
    common = ["table10", "--variants-dir", str(tmp_path / "variants"), "--runs-dir", str(tmp_path / "runs"),
              "--cache-dir", str(tmp_path / "cache"), "--seeds", "2", "--max-epochs", "1", "--variants", "ORI", "UP∅",
              "--models", "nrms"]
    bench.main([*common, "--results-dir", str(tmp_path / "a")])
    first = json.loads((tmp_path / "a" / "table10.json").read_text())
    # the same numbers as if they were DCN's, from runs on a machine that is gone
    earlier = tmp_path / "earlier" / "table10.json"
    earlier.parent.mkdir()
    earlier.write_text(json.dumps(first).replace('"nrms"', '"dcn"'))
    runs = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")}

    bench.main([*common, "--results-dir", str(tmp_path / "b"), "--earlier", str(earlier)])
    merged = json.loads((tmp_path / "b" / "table10.json").read_text())
    assert merged["models"] == ["dcn", "nrms"] and merged["earlier"]["models"] == ["dcn"]
    assert merged["results"]["UP∅"]["dcn"]["test"] == first["results"]["UP∅"]["nrms"]["test"] \
        == merged["results"]["UP∅"]["nrms"]["test"]
    assert merged["tests"]["UP∅"]["dcn"] == first["tests"]["UP∅"]["nrms"]
    assert "Rows of dcn: from" in merged["markdown"] and "| dcn | ORI |" in merged["markdown"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")} == runs  # nothing retrained

    # a table that copied rows can be the earlier table of the next one: its copied rows come along
    chained = tmp_path / "earlier" / "chained.json"
    chained.write_text((tmp_path / "b" / "table10.json").read_text().replace('"nrms"', '"pnn"'))
    bench.main([*common, "--results-dir", str(tmp_path / "d"), "--earlier", str(chained)])
    again = json.loads((tmp_path / "d" / "table10.json").read_text())
    assert again["models"] == ["dcn", "pnn", "nrms"] and again["earlier"]["models"] == ["dcn", "pnn"]
    assert again["results"]["UP∅"]["dcn"] == merged["results"]["UP∅"]["dcn"]
    assert "| dcn | ORI |" in again["markdown"] and "| pnn | ORI |" in again["markdown"]

    with pytest.raises(SystemExit, match="another protocol .*max_epochs 1 != 2"):
        longer = [("2" if a == "1" and common[i - 1] == "--max-epochs" else a) for i, a in enumerate(common)]
        bench.main([*longer, "--results-dir", str(tmp_path / "c"), "--earlier", str(earlier)])
    with pytest.raises(SystemExit, match="not a table6 result"):
        bench.main(["table6", *common[1:], "--results-dir", str(tmp_path / "c"), "--earlier", str(earlier)])


def test_gated_fusion_runs_of_up_live_beside_the_paper_form_runs(genre, tmp_path):
    (tmp_path / "v" / "up").mkdir(parents=True)  # experiment_config only checks that the variant exists
    args = genre.GenreTables(variants_dir=str(tmp_path / "v"), runs_dir=str(tmp_path / "runs"), threads=1,
                              device="cpu", patience=3, max_epochs=2, lr=None, fusion_form="gated")
    assert genre.run_dir(args, "UP", "nrms").parent.name == "up-gated"
    assert genre.run_dir(args, "ORI", "nrms").parent.name == "ori"  # no fusion, nothing to tell apart
    assert genre.experiment_config(args, "UP", "nrms").model_params == {"interest_fusion": True,
                                                                        "interest_fusion_form": "gated"}
    args.fusion_form = "mlp"
    assert genre.run_dir(args, "UP", "nrms").parent.name == "up"
    assert genre.experiment_config(args, "UP", "nrms").model_params == {"interest_fusion": True}
    assert genre.experiment_config(args, "UP", "nrms").train.init_from is None


def test_a_warm_started_gated_up_run_starts_from_the_same_seeds_ori_run(genre, tmp_path):
    (tmp_path / "v" / "up").mkdir(parents=True)
    (tmp_path / "v" / "ori").mkdir(parents=True)
    args = genre.GenreTables(variants_dir=str(tmp_path / "v"), runs_dir=str(tmp_path / "runs"), threads=1,
                              device="cpu", patience=3, max_epochs=2, lr=None, fusion_form="gated",
                              warm_start=True)
    assert genre.run_dir(args, "UP", "nrms").parent.name == "up-gated-warm"  # beside the cold-start runs
    exp = genre.experiment_config(args, "UP", "nrms", seed=2022)
    assert exp.train.init_from == str(tmp_path / "runs" / "ori" / "nrms" / "seed-2022")
    assert exp.model_params["interest_fusion_form"] == "gated"
    assert genre.experiment_config(args, "ORI", "nrms").train.init_from is None  # no fusion, nothing to warm
    args.fusion_form = "mlp"  # the paper's MLP replaces the user vector: it cannot start as ORI
    with pytest.raises(genre.GenrecsysError, match="--warm-start needs --fusion-form gated"):
        genre.experiment_config(args, "UP", "nrms")
    args.command = "train"
    with pytest.raises(genre.GenrecsysError, match="--warm-start needs --fusion-form gated"):
        genre.run_command(args)  # before ORI trains
    assert not (tmp_path / "runs").exists()


def test_answer_caps_come_from_the_main_jobs_stage_and_max_tokens_overrides_them(genre, tmp_path):
    from genrecsys.stages.genre import QUICK_TOKENS, augment_config

    quick = genre.GenreTables(quick=True, variants_dir=str(tmp_path)).resolved()
    assert (quick.models, quick.seeds, quick.max_epochs, quick.limit) == (["nrms"], 1, 1, 20)
    full = genre.GenreTables(variants_dir=str(tmp_path), seeds=3).resolved()
    assert full.seeds == 3 and full.models == genre.MODELS and full.models is not genre.MODELS
    q = augment_config(2, 20, True)
    assert (q.summarize.max_tokens, q.generate.max_tokens) == (QUICK_TOKENS["summarize"], QUICK_TOKENS["generate"])
    capped = augment_config(2, None, True, max_tokens=16)
    assert capped.summarize.max_tokens == capped.profile.max_tokens == capped.generate.max_tokens == 16
    assert augment_config(2, None, False).summarize.max_tokens != 16  # the task's own default without a cap
    with pytest.raises(GenrecsysError, match="unknown GENRE command"):
        genre.run_command(genre.GenreTables(command="table99"))
