from __future__ import annotations

import pytest

from genrecsys.config import (DataConfig, EvalConfig, ExperimentConfig, LLMConfig, RelandConfig, TrainConfig,
                              from_dict, load_experiment)
from genrecsys.errors import GenrecsysError


def test_yaml_maps_onto_nested_dataclasses(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: bpr\ndata: {split: ratio, ratios: [0.7, 0.2, 0.1]}\ntrain: {lr: 0.01, epochs: 3}\neval: {ks: [5, 10]}\n")
    cfg = load_experiment(path)
    assert cfg.model == "bpr"
    assert cfg.data.ratios == (0.7, 0.2, 0.1)
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3
    assert cfg.eval.ks == (5, 10)


def test_unknown_key_is_an_error_naming_the_valid_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train: {learning_rate: 0.01}\n")
    with pytest.raises(GenrecsysError, match=r"learning_rate.*valid keys: .*lr"):
        load_experiment(path)


def test_wrong_type_is_an_error_naming_the_field():
    with pytest.raises(GenrecsysError, match="train.epochs: expected an integer"):
        from_dict(ExperimentConfig, {"train": {"epochs": "ten"}})


def test_int_is_accepted_where_a_float_is_expected():
    assert from_dict(TrainConfig, {"lr": 1}).lr == 1.0


def test_yaml_exponent_without_a_dot_is_a_number_and_words_are_still_errors(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train: {lr: 3e-3, weight_decay: 1E-5}\n")  # YAML 1.1 leaves both as strings
    cfg = load_experiment(path)
    assert cfg.train.lr == 0.003 and cfg.train.weight_decay == 1e-5
    for bad in ("fast", "1e", "nan", "3e-3x"):
        with pytest.raises(GenrecsysError, match="train.lr: expected a number"):
            from_dict(ExperimentConfig, {"train": {"lr": bad}})


def test_invalid_values_are_rejected_in_post_init():
    with pytest.raises(GenrecsysError, match="ratios"):
        DataConfig(ratios=(0.5, 0.1, 0.1))
    with pytest.raises(GenrecsysError, match="split"):
        DataConfig(split="temporal")


def test_longtail_threshold_is_a_non_negative_integer_or_null():
    assert EvalConfig().longtail_max_train == 5
    assert from_dict(ExperimentConfig, {"eval": {"longtail_max_train": None}}).eval.longtail_max_train is None
    assert from_dict(ExperimentConfig, {"eval": {"longtail_max_train": 0}}).eval.longtail_max_train == 0
    for bad in (-1, True):
        with pytest.raises(GenrecsysError, match="longtail_max_train"):
            EvalConfig(longtail_max_train=bad)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(GenrecsysError, match="bad.yaml: invalid YAML"):
        load_experiment(path)


@pytest.mark.parametrize("cls, kwargs, message", [
    (RelandConfig, {"fusion": "sum"}, "reland.fusion must be gated or attention"),
    (LLMConfig, {"grammar_engine": "outlines"}, "llm.grammar_engine must be xgrammar or llguidance"),
    (LLMConfig, {"structured_outputs": "guided_json"}, "llm.structured_outputs must be response_format, vllm or off"),
    (LLMConfig, {"dtype": "fp8"}, "llm.dtype must be auto, float32, bfloat16 or float16"),
    (TrainConfig, {"lr_schedule": "step"}, "train.lr_schedule must be constant, cosine or linear"),
    (TrainConfig, {"warmup_steps": -1}, "train.warmup_steps must be >= 0"),
])
def test_bad_fusion_and_structured_generation_settings_are_one_line_errors(cls, kwargs, message):
    with pytest.raises(GenrecsysError, match=message) as err:
        cls(**kwargs)
    assert "\n" not in str(err.value)
