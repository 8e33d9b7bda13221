"""Beyond-accuracy metrics and group tables on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from genrecsys.eval import beyond as b

# items 1..4 with training popularity 3, 1, 0, 2; three users; user 2 got an empty list
POP = np.array([0, 3, 1, 0, 2])
LISTS = np.array([[1, 2], [1, 3], [-1, -1]])
GENRES = [set(), {"A", "B"}, {"B"}, {"C"}, set()]
HIST = [np.array([4]), np.array([2]), np.array([], dtype=int)]


def test_coverage_and_gini_of_exposure():
    assert b.coverage(LISTS, n_items=4) == 0.75
    # exposure of items 1..4: 2, 1, 1, 0 -> sorted 0,1,1,2: (-3*0 - 1*1 + 1*1 + 3*2) / (4 * 4)
    assert b.gini_of_exposure(LISTS, n_items=4) == pytest.approx(6 / 16)
    assert b.gini(np.zeros(3)) != b.gini(np.zeros(3))  # no exposure at all: undefined (NaN)


def test_novelty_is_mean_self_information_with_add_one_popularity():
    # p = (pop + 1) / (3 + 1): item 1 -> 1 (0 bits), item 2 -> 1/2 (1 bit), item 3 -> 1/4 (2 bits)
    nov = b.novelty(LISTS, POP, n_users=3)
    assert nov[:2].tolist() == [0.5, 1.0] and np.isnan(nov[2])


def test_intra_list_diversity_by_genre_and_by_vector():
    ild = b.ild_genres(LISTS, GENRES)
    assert ild[:2].tolist() == [0.5, 1.0] and np.isnan(ild[2])  # {A,B} vs {B}: 1 - 1/2; {A,B} vs {C}: 1
    vectors = np.array([[0, 0], [1, 0], [0, 1], [2, 0], [1, 1]], dtype=float)
    ilv = b.ild_vectors(LISTS, vectors)
    assert ilv[:2] == pytest.approx([1.0, 0.0]) and np.isnan(ilv[2])
    assert np.isnan(b.ild_genres(np.array([[2, -1]]), GENRES)[0])  # one item: no pair


def test_popularity_arp_lift_and_long_tail_share():
    assert b.arp(LISTS, POP)[:2].tolist() == [2.0, 1.5]
    lift = b.popularity_lift(LISTS, POP, HIST)
    assert lift[:2].tolist() == [0.0, 0.5] and np.isnan(lift[2])  # 2/2 - 1; 1.5/1 - 1; no history
    # the short head: item 1 alone holds 3 of 6 interactions >= 20%
    assert b.short_head(POP).tolist() == [False, True, False, False, False]
    share = b.longtail_share(LISTS, POP)
    assert share[:2].tolist() == [0.5, 0.5] and np.isnan(share[2])


def test_calibration_kl_against_steck_by_hand():
    kl = b.calibration_kl(LISTS, HIST, GENRES)
    # user 0's history (item 4) has no genres: undefined; user 1: p = {B: 1}, q = {A: .25, B: .25, C: .5}
    assert np.isnan(kl[0]) and np.isnan(kl[2])
    assert kl[1] == pytest.approx(math.log(1 / (0.99 * 0.25 + 0.01)))
    same = b.calibration_kl(np.array([[2]]), [np.array([2])], GENRES)
    assert same[0] == pytest.approx(0.0)


def test_summary_averages_defined_users_only():
    s = b.summary(b.beyond_accuracy(LISTS, POP, 3, GENRES, HIST))
    assert s["coverage"] == 0.75 and s["novelty"] == 0.75 and s["pop_lift"] == 0.25
    assert set(s) == {"coverage", "gini", "novelty", "ild_genre", "arp", "pop_lift", "longtail_share", "calibration_kl"}


def test_group_table_means_gap_and_test():
    table = b.group_table({"ndcg": np.array([1.0, 2.0, 3.0, np.nan])}, np.array(["a", "a", "b", "b"]))
    row = table["ndcg"]
    assert row["a"] == 1.5 and row["b"] == 3.0 and row["gap"] == 1.5 and 0 < row["p"] <= 1
    flat = b.group_table({"m": np.ones(4)}, np.array(["a", "a", "b", "b"]))["m"]
    assert flat["gap"] == 0.0 and flat["p"] == 1.0


def test_user_group_helpers():
    assert [b.age_band(a) for a in (7, "18", 34.9, 45, 55, 56)] == ["<18", "18-24", "25-34", "45-49", "50-55", "56+"]
    assert b.activity_quartile(np.array([1, 2, 3, 4, 5, 6, 7, 8])).tolist() == ["Q1", "Q1", "Q2", "Q2", "Q3", "Q3",
                                                                               "Q4", "Q4"]


def test_evaluate_and_compare_beyond_on_runs(block_dataset_dir, tmp_path, capsys):
    import json

    from genrecsys.cli.main import main
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.experiment import run_experiment

    runs = []
    for model in ("pop", "bpr"):
        cfg = ExperimentConfig(model=model, data=DataConfig(dataset=str(block_dataset_dir)),
                               train=TrainConfig(progress=False, epochs=2))
        run_experiment(cfg, tmp_path / model)
        runs.append(str(tmp_path / model))
    assert main(["evaluate", runs[1], "--beyond", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "bpr" / "metrics.json").read_text())
    assert res["summary"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])  # the run's own lists
    assert 0 < res["summary"]["coverage"] <= 1 and "ild_embedding" in res["summary"]
    assert set(res["groups"]) >= {"activity", "new_vs_warm"} and "gap" in res["groups"]["activity"]["ndcg@10"]
    assert main(["compare", *runs, "--beyond"]) == 0
    table = capsys.readouterr().out
    assert "| coverage |" in table and "pop" in table and "bpr" in table
    # Pop recommends the same items to everyone: the lowest coverage there is
    assert main(["evaluate", runs[0], "--beyond", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["coverage"] < res["summary"]["coverage"]


def test_beyond_of_a_run_without_weights_reads_its_saved_figures(block_dataset_dir, tmp_path, capsys):
    """A benchmark's committed evidence keeps no weights: `evaluate --beyond` / `compare --beyond`
    read the run's beyond.json, the same figures the recomputation gives (less ild_embedding,
    which needs the model's vectors); a multi-seed directory of such runs is averaged."""
    import json
    import shutil

    from genrecsys.cli.main import main
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.errors import GenrecsysError
    from genrecsys.experiment import run_experiment
    from genrecsys.stages.holistic import run_holistic

    cfg = ExperimentConfig(model="bpr", data=DataConfig(dataset=str(block_dataset_dir)),
                           train=TrainConfig(progress=False, epochs=2))
    run_experiment(cfg, tmp_path / "bpr")
    full = run_holistic(tmp_path / "bpr")
    for seed in ("seed-1", "seed-2"):
        shutil.copytree(tmp_path / "bpr", tmp_path / "evidence" / seed)
        (tmp_path / "evidence" / seed / "model.pt").unlink()
    assert main(["evaluate", str(tmp_path / "evidence" / "seed-1"), "--beyond", "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["source"] == "beyond.json" and "ild_embedding" not in saved["summary"]
    assert saved["summary"] == pytest.approx({m: v for m, v in full["summary"].items() if m != "ild_embedding"})
    assert saved["groups"]["activity"]["ndcg@10"] == pytest.approx(full["groups"]["activity"]["ndcg@10"],
                                                                   nan_ok=True)
    both = run_holistic(tmp_path / "evidence", all_seeds=True)  # seed dirs found without model.pt
    assert both["seeds"] == 2 and both["summary"]["coverage"] == pytest.approx(full["summary"]["coverage"])
    assert main(["evaluate", str(tmp_path / "evidence"), "--beyond", "--all-seeds"]) == 0
    printed = capsys.readouterr().out
    assert "mean of 2 seeds" in printed and "ndcg@10 by activity: Q1" in printed
    assert main(["compare", str(tmp_path / "bpr"), str(tmp_path / "evidence" / "seed-1"), "--beyond"]) == 0
    assert "| coverage |" in capsys.readouterr().out
    with pytest.raises(GenrecsysError, match="no weights"):  # saved at k = 10, asked at k = 5
        run_holistic(tmp_path / "evidence" / "seed-1", k=5)


def test_mean_over_seeds_and_the_holistic_table_by_hand():
    from genrecsys.stages.holistic import holistic_table, mean_over_seeds

    def res(ndcg, cov, f, m):
        return {"summary": {"ndcg@10": ndcg, "coverage": cov}, "ranking": "full", "seeds": 1, "k": 10,
                "groups": {"gender": {"ndcg@10": {"F": f, "M": m, "gap": abs(f - m), "p": 0.5}}}}

    both = mean_over_seeds([res(0.10, 0.5, 0.08, 0.12), res(0.12, 0.7, 0.10, 0.10)])
    assert both["seeds"] == 2
    assert both["summary"] == pytest.approx({"ndcg@10": 0.11, "coverage": 0.6})
    assert both["summary_std"]["coverage"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    row = both["groups"]["gender"]["ndcg@10"]
    assert (row["F"], row["M"], row["gap"]) == pytest.approx((0.09, 0.11, 0.02)) and np.isnan(row["p"])
    header, rows = holistic_table({"two seeds": both}, groupings=("gender", "age"))
    assert header[:4] == ["run", "seeds", "accuracy protocol", "ndcg@10"]
    assert rows[0][:5] == ["two seeds", "2", "full", "0.1100 ± 0.0141", "0.6000 ± 0.1414"]
    assert rows[0][-2:] == ["F 0.090 / 0.020", "– nan / nan"]  # no age groups in these runs
