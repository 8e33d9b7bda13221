from __future__ import annotations

import json

import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.train.loop import fit, seed_everything

EVAL = EvalConfig(ks=(5, 10))


def _split():
    return leave_one_out(block_cycles(n_users=20))


def _model(name, split, **params):
    seed_everything(0)
    return build_model(name, params, split)


def _cfg(**kw):
    base = dict(progress=False, batch_size=32, lr=0.01, seed=3)
    return TrainConfig(**{**base, **kw})


def test_same_seed_gives_identical_weights():
    split = _split()
    a, b = _model("sasrec", split, max_len=8), _model("sasrec", split, max_len=8)
    fit(a, split, _cfg(epochs=3), EVAL, max_len=8)
    fit(b, split, _cfg(epochs=3), EVAL, max_len=8)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    split = _split()
    straight = _model("sasrec", split, max_len=8)
    r1 = fit(straight, split, _cfg(epochs=6, patience=100), EVAL, max_len=8, run_dir=tmp_path / "a")
    resumed = _model("sasrec", split, max_len=8)
    fit(resumed, split, _cfg(epochs=3, patience=100), EVAL, max_len=8, run_dir=tmp_path / "b")  # "crash" after 3
    fresh = _model("sasrec", split, max_len=8)
    r2 = fit(fresh, split, _cfg(epochs=6, patience=100), EVAL, max_len=8, run_dir=tmp_path / "b", resume=True)
    assert r2.epochs_run == 6 and r2.best_epoch == r1.best_epoch
    for (k, va), vb in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.allclose(va, vb), k


def test_a_scheduled_run_killed_mid_epoch_resumes_on_the_same_learning_rate_curve(tmp_path):
    import numpy as np
    import pytest

    split = _split()
    cfg = _cfg(epochs=5, patience=100, lr_schedule="cosine", warmup_steps=3)
    straight = _model("sasrec", split, max_len=8)
    fit(straight, split, cfg, EVAL, max_len=8, run_dir=tmp_path / "a")
    crashing = _model("sasrec", split, max_len=8)
    per_epoch = len(list(crashing.batches(split, 32, np.random.default_rng(0))))
    calls, loss = [0], crashing.loss

    def dies(batch):  # killed in the middle of the third epoch
        calls[0] += 1
        if calls[0] > 2 * per_epoch + 1:
            raise KeyboardInterrupt
        return loss(batch)

    crashing.loss = dies
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, split, cfg, EVAL, max_len=8, run_dir=tmp_path / "b")
    fresh = _model("sasrec", split, max_len=8)
    fit(fresh, split, cfg, EVAL, max_len=8, run_dir=tmp_path / "b", resume=True)
    for (k, va), vb in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.allclose(va, vb), k
    constant = _model("sasrec", split, max_len=8)  # and the schedule did change the training
    fit(constant, split, _cfg(epochs=5, patience=100), EVAL, max_len=8)
    assert not all(torch.allclose(a, b) for a, b in zip(straight.state_dict().values(), constant.state_dict().values()))


def _resumable(case, split, request, tmp_path):
    """(model name, its parameters) of a mid-epoch resume case: SASRec, and the fine-tuned
    LLMs on a tiny random Llama, whose checkpoints hold the trained weights only."""
    if case == "sasrec":
        return "sasrec", {"max_len": 8}
    llm = str(request.getfixturevalue("tiny_causal_lm_dir"))
    if case == "tallrec":
        return "tallrec", {"llm": llm, "answers": ["item", "group"], "recent": 4}
    from newsfixtures import make_toy_semantic_ids

    params = {"llm": llm, "codes": make_toy_semantic_ids(split, tmp_path / "codes"), "max_len": 8}
    return "llmsid", {**params, **{"llmsid-lora": {}, "llmsid-full": {"finetune": "full"},
                                   "llmsid-dropout-align": {"dropout": 0.1, "align": 0.5}}[case]}


@pytest.mark.parametrize("case", ["sasrec", "llmsid-lora", "llmsid-full", "llmsid-dropout-align", "tallrec"])
def test_a_run_killed_mid_epoch_resumes_from_its_step_checkpoint_with_the_same_result(case, request, tmp_path):
    """train.checkpoint_steps: the killed epoch is not redone from its start; it continues
    from the last step checkpoint (the same batches, dropout draws and optimizer state).
    The LLM cases rebuild the base model and load only their adapters / trained weights."""
    import numpy as np

    split = _split()
    name, params = _resumable(case, split, request, tmp_path)
    cfg = _cfg(epochs=3, patience=100, checkpoint_steps=2, batch_size=4)
    straight = _model(name, split, **params)
    r1 = fit(straight, split, cfg, EVAL, max_len=8, run_dir=tmp_path / "a")
    crashing = _model(name, split, **params)
    per_epoch = len(list(crashing.batches(split, 4, np.random.default_rng(0))))
    assert per_epoch >= 4
    calls, loss = [0], crashing.loss

    def dies(batch):  # killed at the 4th step of the second epoch, after its step-2 checkpoint
        calls[0] += 1
        if calls[0] == per_epoch + 4:
            raise KeyboardInterrupt
        return loss(batch)

    crashing.loss = dies
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, split, cfg, EVAL, max_len=8, run_dir=tmp_path / "b")
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert saved["state"]["epoch"] == 1 and saved["state"]["epoch_step"] == 2  # inside the second epoch
    fresh = _model(name, split, **params)
    steps = [0]
    counted = fresh.loss

    def counting(batch):
        steps[0] += 1
        return counted(batch)

    fresh.loss = counting
    r2 = fit(fresh, split, cfg, EVAL, max_len=8, run_dir=tmp_path / "b", resume=True)
    assert steps[0] == 2 * per_epoch - 2  # the rest of epoch 2, then epoch 3: nothing trained twice
    assert [h["loss"] for h in r2.history] == pytest.approx([h["loss"] for h in r1.history], abs=1e-6)
    for (k, va), vb in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_early_stopping_stops_and_restores_the_best_checkpoint(tmp_path):
    split = _split()
    model = _model("bpr", split)
    # lr 0 means no improvement after the first validation, so patience 2 stops at epoch 3
    res = fit(model, split, _cfg(epochs=50, patience=2, lr=0.0), EVAL, run_dir=tmp_path)
    assert res.stopped_by == "early_stopping"
    assert res.best_epoch == 0 and res.epochs_run == 3
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]


def test_best_weights_are_restored_not_the_last(tmp_path):
    split = _split()
    model = _model("bpr", split)
    res = fit(model, split, _cfg(epochs=40, patience=100, lr=0.05), EVAL)
    best = max(h["valid"]["ndcg@10"] for h in res.history)
    assert res.best_valid["ndcg@10"] == best
    from genrecsys.train.loop import evaluate

    assert abs(evaluate(model, split, "valid", EVAL).metrics["ndcg@10"] - best) < 1e-9


def test_max_seconds_guard_stops_training():
    split = _split()
    model = _model("bpr", split)
    res = fit(model, split, _cfg(epochs=10_000, patience=10_000, max_seconds=0.5), EVAL)
    assert res.stopped_by == "max_seconds" and res.epochs_run < 10_000


def test_a_run_that_finishes_its_epochs_past_the_clock_cap_is_not_called_capped():
    split = _split()
    model = _model("bpr", split)
    res = fit(model, split, _cfg(epochs=1, patience=10_000, max_seconds=1e-9), EVAL)  # over the cap after its one epoch
    assert res.stopped_by == "epochs" and res.epochs_run == 1


def test_bfloat16_precision_trains_under_autocast_and_evaluates_in_float32():
    """train.precision=bfloat16: every training step's forward pass and loss run under
    bfloat16 autocast (its matmuls give bfloat16), the weights stay float32 and
    validation scores are computed outside autocast (float32, the exact scores)."""
    import pytest

    from genrecsys.errors import GenrecsysError

    split = _split()
    seen: dict[str, set] = {"loss": set(), "score": set()}
    runs = {}
    for precision in ("float32", "bfloat16"):
        model = _model("sasrec", split, max_len=8)
        loss, score = model.loss, model.score

        def traced_loss(batch, loss=loss):
            seen["loss"].add((torch.is_autocast_enabled("cpu"), (torch.ones(2, 2) @ torch.ones(2, 2)).dtype))
            return loss(batch)

        def traced_score(*a, score=score):
            out = score(*a)
            seen["score"].add((torch.is_autocast_enabled("cpu"), out.dtype))
            return out

        model.loss, model.score = traced_loss, traced_score
        fit(model, split, _cfg(epochs=2, patience=100, precision=precision), EVAL, max_len=8)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs[precision] = model.state_dict()
        if precision == "float32":
            assert seen["loss"] == {(False, torch.float32)}
        else:
            assert seen["loss"] == {(True, torch.bfloat16)}
        seen["loss"].clear()
    assert seen["score"] == {(False, torch.float32)}
    # the two precisions trained differently (autocast was not a no-op)
    assert not all(torch.equal(a, b) for a, b in zip(runs["float32"].values(), runs["bfloat16"].values()))
    with pytest.raises(GenrecsysError, match="train.precision"):
        TrainConfig(precision="float16")


def test_bfloat16_training_on_a_cpu_without_its_kernels_warns_once_and_still_trains(monkeypatch):
    import warnings

    from genrecsys import machine

    monkeypatch.setattr(machine, "bf16_kernels", lambda: False)  # an AVX2 CPU, whatever this one is
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(_model("sasrec", _split(), max_len=8), _split(), _cfg(epochs=1, precision="bfloat16"), EVAL, max_len=8)
    assert res.epochs_run == 1
    assert [str(w.message).split(":")[0] for w in caught if "matrix instructions" in str(w.message)] == [
        "train.precision bfloat16"]
