"""Time to best side by side (genrecsys.stages.speed): settings over the same seeds, the
baseline comparison, resuming, and the setting specs."""
from __future__ import annotations

import pytest

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
from genrecsys.errors import GenrecsysError
from genrecsys.stages.speed import setting_from_spec, time_to_best, time_to_best_table


def _base(dataset_dir) -> ExperimentConfig:
    return ExperimentConfig(model="bpr", data=DataConfig(dataset=str(dataset_dir)),
                            train=TrainConfig(progress=False, epochs=3, lr=0.05))


def test_settings_run_over_the_same_seeds_and_compare_with_the_baseline(block_dataset_dir, tmp_path):
    base = _base(block_dataset_dir)
    settings = dict(setting_from_spec(s, base) for s in ("slow", "fast:train.lr=0.2,train.epochs=2"))
    assert settings["fast"].train.lr == 0.2 and settings["fast"].train.epochs == 2
    result = time_to_best(settings, 2, tmp_path)
    slow, fast = result["settings"]["slow"], result["settings"]["fast"]
    assert [r["seed"] for r in slow["runs"]] == [r["seed"] for r in fast["runs"]] == [2020, 2021]
    assert all(r["epochs"] == 3 for r in slow["runs"]) and all(r["epochs"] == 2 for r in fast["runs"])
    assert "vs_baseline" not in slow
    vs = fast["vs_baseline"]
    assert vs["test_delta"] == pytest.approx(fast["test"]["mean"] - slow["test"]["mean"])
    assert vs["seconds_to_best_ratio"] == pytest.approx(fast["seconds_to_best"]["mean"] / slow["seconds_to_best"]["mean"])
    assert vs["tests"]["n"] == 2
    table = time_to_best_table(result)
    assert table.count("\n") == 4 and "| slow |" in table and "baseline" in table
    # Finished runs are reused: a second call trains nothing and gives the same figures.
    for d in (tmp_path / "slow").glob("seed-*"):
        (d / "model.pt").unlink()
    again = time_to_best(settings, 2, tmp_path)
    assert again["settings"]["fast"]["runs"] == fast["runs"]


def test_setting_specs_fail_on_one_line(block_dataset_dir):
    base = _base(block_dataset_dir)
    assert setting_from_spec("x:model_params.factors=8", base)[1].model_params == {"factors": 8}
    assert setting_from_spec("x:eval.mask_seen=false", base)[1].eval.mask_seen is False
    for bad, match in ((":train.lr=1", "NAME"), ("x:train.lr", "key=value"), ("x:train.nope=1", "nope"),
                       ("x:model.lr=1", "not a config field")):
        with pytest.raises(GenrecsysError, match=match):
            setting_from_spec(bad, base)


def test_one_seed_has_no_spread_to_judge_by(block_dataset_dir, tmp_path):
    base = _base(block_dataset_dir)
    settings = dict(setting_from_spec(s, base) for s in ("a", "b:train.lr=0.2"))
    result = time_to_best(settings, 1, tmp_path)
    assert result["settings"]["b"]["vs_baseline"]["within_one_baseline_std"] is None
    assert "outside" not in time_to_best_table(result)
