"""SASRec head to head with RecBole 1.2.1 on ML-100K (benchmarks/sasrec_vs_recbole.py):
each system trained to its own early stopping and judged under both ranking rules, with
model selection on the rule being judged:

- masked: items the user has already seen are not candidates (genrecsys's default);
- unmasked: only padding is masked (RecBole's rule for sequential models).

RecBole runs in its own venv from a driver script (:func:`recbole_driver`); it validates on
both rules every epoch, keeps the best checkpoint of each, and trains on until both rules'
early stopping (patience 10, RecBole's ``early_stopping``) has fired, which is the same as
two runs because validation draws no random numbers. genrecsys simply trains once per rule.

Importing this module does not import torch.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import asdict, replace
from pathlib import Path

from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from genrecsys.eval.report import markdown_table

RULES = ("masked", "unmasked")

RECBOLE_SASREC_CONFIG: dict = {
    "seed": 2020,
    "reproducibility": True,
    "use_gpu": False,
    "device": "cpu",
    "show_progress": False,
    "log_wandb": False,
    "worker": 0,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["Hit", "NDCG", "MRR"],
    "topk": [5, 10, 20],
    "valid_metric": "NDCG@10",
    "eval_step": 1,
    "stopping_step": 10,
    "learner": "adam",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "train_batch_size": 256,
    "hidden_size": 64,
    "MAX_ITEM_LIST_LENGTH": 50,
    "loss_type": "CE",
    "train_neg_sample_args": None,
}


def seen_masks(users, items, valid_users, valid_items, test_users, test_items, n_users: int, n_items: int):
    """RecBole ids of every interaction and of the validation / test targets -> two
    (n_users, n_items) bool arrays: the items each user has seen before its validation
    target (its training items) and before its test target (training + validation items).

    Written to run inside RecBole's venv too: the driver of benchmarks/sasrec_vs_recbole.py
    carries this function's source, so RecBole's masked rule is the one tested here.
    """
    import numpy as np

    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    test_seen = np.zeros((n_users, n_items), dtype=bool)
    test_seen[users, items] = True
    test_seen[np.asarray(test_users, dtype=np.int64), np.asarray(test_items, dtype=np.int64)] = False
    valid_seen = test_seen.copy()
    valid_seen[np.asarray(valid_users, dtype=np.int64), np.asarray(valid_items, dtype=np.int64)] = False
    return valid_seen, test_seen


def genrecsys_sasrec_both_rules(run_root: str | Path, *, threads: int = 2, data_path: str | None = None,
                                epochs: int | None = None, cache_dir: str | Path | None = None,
                                data: DataConfig | None = None) -> dict:
    """Train genrecsys SASRec (its defaults, seed 2020) once per rule with model selection on
    that rule's validation NDCG@10, and evaluate each selected model on both rules.

    Returns ``{"rules": {rule: {...}}, "config": ..., "data": ...}``: per rule the best
    epoch, seconds to best, epochs run, validation and test metrics on the rule, and the
    test metrics of the same checkpoint on the other rule (``test_other_rule``).
    """
    import torch

    from genrecsys.experiment import load_run, run_experiment
    from genrecsys.registry import MODELS
    from genrecsys.train.loop import evaluate

    train = TrainConfig(threads=threads, progress=False)
    if epochs:
        train = replace(train, epochs=epochs)
    data = data or (DataConfig(path=data_path) if data_path else DataConfig())  # ML-100K, from data_path if given
    model_cls = MODELS.get("sasrec")
    out: dict = {"rules": {}}
    for rule in RULES:
        cfg = ExperimentConfig(model="sasrec", data=data, train=train, eval=EvalConfig(mask_seen=rule == "masked"))
        run_dir = Path(run_root) / f"select-{rule}"
        metrics = run_experiment(cfg, run_dir, cache_dir=cache_dir, reuse=True)  # a resumed comparison keeps its runs
        _, split, model = load_run(run_dir, cache_dir)
        torch.set_num_threads(threads)
        other = replace(cfg.eval, mask_seen=rule != "masked")
        history = json.loads((run_dir / "history.json").read_text())
        out["rules"][rule] = {
            "best_epoch": metrics["best_epoch"], "seconds_to_best": metrics["seconds_to_best"],
            "epochs": metrics["epochs"], "stopped_by": metrics["stopped_by"],
            "seconds_per_epoch": metrics["seconds_per_epoch"], "train_seconds": metrics["train_seconds"],
            "total_seconds": metrics["total_seconds"], "valid": metrics["valid"], "test": metrics["test"],
            "test_other_rule": evaluate(model, split, "test", other, cfg.data.max_seq_len).metrics,
            "train_seconds_per_epoch": sum(r["train_seconds"] for r in history) / max(len(history), 1),
            "history": history, "n_parameters": metrics["n_parameters"],
        }
        out["config"] = {"model_params": asdict(model_cls.Config()),
                         "batch_size": train.batch_size or model_cls.default_batch_size,
                         "lr": train.lr if train.lr is not None else model_cls.default_lr,
                         "epochs": train.epochs, "patience": train.patience, "seed": train.seed,
                         "max_seq_len": cfg.data.max_seq_len}
        out["data"] = {"users": int(split.dataset.n_users), "items": int(split.dataset.n_items),
                       "interactions": int(len(split.dataset.interactions)), "protocol": split.protocol}
    return out


def both_rules_table(recbole: dict, genrecsys: dict, ks: tuple[str, ...] = ("hit@10", "ndcg@10", "mrr@10")) -> str:
    """Markdown: per rule, each system selected and tested on that rule — best epoch,
    seconds to best, valid NDCG@10 and test metrics — with genrecsys − RecBole."""
    rows = []
    for rule in RULES:
        rb, gr = recbole["rules"][rule], genrecsys["rules"][rule]
        label = {"masked": "seen items masked", "unmasked": "only padding masked (RecBole's rule)"}[rule]
        rows.append([label, "best epoch (0-based)", str(rb["best_epoch"]), str(gr["best_epoch"]), ""])
        rows.append(["", "seconds to best", f"{rb['seconds_to_best']:,.0f}", f"{gr['seconds_to_best']:,.0f}",
                     f"RecBole / genrecsys {rb['seconds_to_best'] / max(gr['seconds_to_best'], 1e-9):.1f}×"])
        if "cpu_seconds_to_best" in rb:  # wall time counts a paused RecBole; its CPU time does not
            rows.append(["", "RecBole CPU seconds to best (= wall on one idle thread)", f"{rb['cpu_seconds_to_best']:,.0f}",
                         "", f"RecBole / genrecsys {rb['cpu_seconds_to_best'] / max(gr['seconds_to_best'], 1e-9):.1f}×"])
        rows.append(["", "valid NDCG@10 (selection)", f"{rb['valid']['ndcg@10']:.4f}", f"{gr['valid']['ndcg@10']:.4f}",
                     f"{gr['valid']['ndcg@10'] - rb['valid']['ndcg@10']:+.4f}"])
        for k in ks:
            name = k.upper().replace("HIT", "HR")
            rows.append(["", f"test {name}", f"{rb['test'][k]:.4f}", f"{gr['test'][k]:.4f}",
                         f"{gr['test'][k] - rb['test'][k]:+.4f}"])
        k = "ndcg@10"
        rows.append(["", "test NDCG@10 of this checkpoint on the other rule", f"{rb['test_other_rule'][k]:.4f}",
                     f"{gr['test_other_rule'][k]:.4f}", ""])
    return markdown_table(["rule (selection = test)", "", "RecBole 1.2.1", "genrecsys", "genrecsys − RecBole"], rows)


_DRIVER = r'''
"""Written at run time by genrecsys benchmarks/sasrec_vs_recbole.py: RecBole SASRec on ML-100K.

Follows recbole.quick_start.run_recbole step by step (same seeding order, so the numbers
match a run_recbole call) without importing recbole.quick_start, which pulls in ray.
Validates on both rules every epoch (RecBole's own, only padding masked, drives its fit;
the masked rule is tracked beside it with RecBole's early_stopping) and trains on after
fit() until the masked rule has stopped too. After every epoch it writes a checkpoint
(spec "checkpoint"): run again, it continues from the last finished epoch with the same
model, optimizer, early-stopping counters of both rules, random states and clocks.
"""
import json
import logging
import os
import random
import resource
import sys
import time

# RecBole 1.2.1 reloads its own best checkpoint (a pickle holding its Config) with a bare
# torch.load, which torch >= 2.6 refuses by default (weights_only=True).
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
spec = json.loads(open(sys.argv[1]).read())
sys.argv = sys.argv[:1]  # RecBole's Config parses the command line
import torch

torch.set_num_threads(spec["threads"])

import numpy
import pandas
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.transform import construct_transform
from recbole.utils import early_stopping, get_flops, get_model, get_trainer, init_logger, init_seed

__SEEN_MASKS__


def say(msg):
    print(f"[recbole] {msg}", file=sys.stderr, flush=True)


def column(feat, name):
    v = feat[name]
    return v.numpy() if hasattr(v, "numpy") else numpy.asarray(v)


t0 = time.perf_counter()
config = Config(model="SASRec", dataset="ml-100k", config_dict=spec["config"])
init_seed(config["seed"], config["reproducibility"])
init_logger(config)
log_file = None
for h in logging.getLogger().handlers:
    if isinstance(h, logging.FileHandler):
        log_file = h.baseFilename
    elif isinstance(h, logging.StreamHandler):
        h.setLevel(logging.WARNING)  # RecBole's full INFO log goes to log_file only
dataset = create_dataset(config)
uid, iid = dataset.uid_field, dataset.iid_field
all_users, all_items = column(dataset.inter_feat, uid), column(dataset.inter_feat, iid)
data = {"users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1), "interactions": int(dataset.inter_num),
        "data_path": os.path.normpath(config["data_path"])}
train_data, valid_data, test_data = data_preparation(config, dataset)
valid_seen, test_seen = seen_masks(all_users, all_items, column(valid_data._dataset.inter_feat, uid),
                                   column(valid_data._dataset.inter_feat, iid), column(test_data._dataset.inter_feat, uid),
                                   column(test_data._dataset.inter_feat, iid), dataset.user_num, dataset.item_num)
valid_seen, test_seen = torch.from_numpy(valid_seen), torch.from_numpy(test_seen)
init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
# Importing recbole.model.sequential_recommender runs sine.py, which calls
# torch.autograd.set_detect_anomaly(True) for the whole process: RecBole as shipped trains
# every sequential model with autograd anomaly detection on.
anomaly_as_shipped = torch.is_anomaly_enabled()
if spec.get("disable_anomaly_detection"):
    torch.autograd.set_detect_anomaly(False)
flops = get_flops(model, dataset, config["device"], logging.getLogger(), construct_transform(config))
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
prep_seconds = time.perf_counter() - t0
data.update(train_samples=int(train_data.sample_size), valid_users=int(valid_data.sample_size),
            test_users=int(test_data.sample_size), seen_in_valid=int(valid_seen.sum()), seen_in_test=int(test_seen.sum()))
say(f"data ready in {prep_seconds:.1f} s: {data}; torch threads {torch.get_num_threads()}; "
    f"autograd anomaly detection {'ON' if torch.is_anomaly_enabled() else 'off'}")

# The masked rule: seen items get -inf after the model scores them (RecBole's evaluator
# already sets padding to -inf and, for sequential models, nothing else).
mask_now = [None]
full_sort_predict = model.full_sort_predict


def masked_full_sort_predict(interaction):
    scores = full_sort_predict(interaction)
    if mask_now[0] is not None:
        scores = scores.view(len(interaction), -1).masked_fill(mask_now[0][interaction[uid].long()], float("-inf"))
    return scores


model.full_sort_predict = masked_full_sort_predict
key = config["valid_metric"].lower()
records = []
fit_start = None
masked = {"best": -numpy.inf, "cur_step": 0, "stopped": False, "state": None, "epochs": None}
orig_train, orig_valid = trainer._train_epoch, trainer._valid_epoch


def evaluate_with(mask, fn, *args, **kwargs):
    mask_now[0] = mask
    try:
        return fn(*args, **kwargs)
    finally:
        mask_now[0] = None


def timed_train(train_data, epoch_idx, *args, **kwargs):
    t, cpu = time.perf_counter(), time.process_time()
    loss = orig_train(train_data, epoch_idx, *args, **kwargs)
    # CPU seconds beside wall seconds: with one thread they agree on an idle core, and they
    # do not count time the process was paused (kill -STOP) or waiting for a busy core.
    records.append({"epoch": epoch_idx, "loss": float(sum(loss) if isinstance(loss, tuple) else loss),
                    "train_seconds": time.perf_counter() - t, "train_cpu_seconds": time.process_time() - cpu})
    return loss


def timed_valid(valid_data, *args, **kwargs):
    r = records[-1]
    t = time.perf_counter()
    score, result = orig_valid(valid_data, *args, **kwargs)
    r["valid_seconds"] = time.perf_counter() - t
    r["valid"] = {k: float(v) for k, v in result.items()}
    t = time.perf_counter()
    _, mresult = evaluate_with(valid_seen, orig_valid, valid_data, *args, **kwargs)
    r["valid_masked_seconds"] = time.perf_counter() - t
    r["valid_masked"] = {k: float(v) for k, v in mresult.items()}
    r["improved_masked"] = False
    if not masked["stopped"]:
        masked["best"], masked["cur_step"], masked["stopped"], update = early_stopping(
            r["valid_masked"][key], masked["best"], masked["cur_step"], max_step=config["stopping_step"], bigger=True)
        if update:
            masked["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            r["improved_masked"] = True
        if masked["stopped"]:
            masked["epochs"] = r["epoch"] + 1
    return score, result


def after_epoch(epoch_idx, valid_score):
    r = records[-1]
    r.setdefault("improved", trainer.cur_step == 0)  # early_stopping reset the counter: a new best (>=)
    r["elapsed"] = time.perf_counter() - fit_start
    r["elapsed_cpu"] = time.process_time() - fit_start_cpu
    say(f"epoch {epoch_idx}: train {r['train_seconds']:.1f} s, valid {r['valid_seconds']:.1f} + "
        f"{r['valid_masked_seconds']:.1f} s, loss {r['loss']:.4f}, valid ndcg@10 {r['valid']['ndcg@10']:.4f}"
        f"{' (best)' if r['improved'] else ''}, masked {r['valid_masked']['ndcg@10']:.4f}"
        f"{' (best)' if r['improved_masked'] else ''}, elapsed {r['elapsed']:.0f} s")


ckpt_path = spec.get("checkpoint")
phase = {"fit_epochs": None}  # set once RecBole's own fit() has returned


def save_checkpoint():
    if not ckpt_path:
        return
    state = {"records": records, "masked": masked, "phase": phase, "model": model.state_dict(),
             "optimizer": trainer.optimizer.state_dict(), "cur_step": trainer.cur_step,
             "best_valid_score": trainer.best_valid_score, "best_valid_result": trainer.best_valid_result,
             "saved_model_file": trainer.saved_model_file, "torch_rng": torch.get_rng_state(),
             "numpy_rng": numpy.random.get_state(), "random_rng": random.getstate(),
             "loader_rng": train_data.generator.get_state(),
             "elapsed": time.perf_counter() - fit_start, "elapsed_cpu": time.process_time() - fit_start_cpu}
    torch.save(state, ckpt_path + ".tmp")
    os.replace(ckpt_path + ".tmp", ckpt_path)  # a kill mid-write leaves the previous epoch's


def after_epoch_saved(epoch_idx, valid_score):
    after_epoch(epoch_idx, valid_score)
    if phase["fit_epochs"] is None and trainer.cur_step > trainer.stopping_step:
        phase["fit_epochs"] = len(records)  # RecBole's early_stopping ends fit() after this callback
    save_checkpoint()


trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
threads_at_fit = torch.get_num_threads()
anomaly_at_fit = torch.is_anomaly_enabled()
fit_start, fit_start_cpu = time.perf_counter(), time.process_time()
if ckpt_path and os.path.exists(ckpt_path):
    saved = torch.load(ckpt_path, weights_only=False)
    records[:] = saved["records"]
    masked.update(saved["masked"])
    phase.update(saved["phase"])
    model.load_state_dict(saved["model"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.start_epoch = len(records)
    trainer.cur_step, trainer.best_valid_score = saved["cur_step"], saved["best_valid_score"]
    trainer.best_valid_result, trainer.saved_model_file = saved["best_valid_result"], saved["saved_model_file"]
    torch.set_rng_state(saved["torch_rng"])
    numpy.random.set_state(saved["numpy_rng"])
    random.setstate(saved["random_rng"])
    train_data.generator.set_state(saved["loader_rng"])
    fit_start, fit_start_cpu = fit_start - saved["elapsed"], fit_start_cpu - saved["elapsed_cpu"]
    say(f"resumed from {ckpt_path} after epoch {len(records) - 1}")
if phase["fit_epochs"] is None:
    trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=after_epoch_saved)
    phase["fit_epochs"] = len(records)
    save_checkpoint()
else:
    trainer.eval_collector.data_collect(train_data)  # what fit() does first, for the test evaluation
fit_epochs = phase["fit_epochs"]
while not masked["stopped"] and len(records) < config["epochs"]:  # RecBole's rule stopped first
    trainer._train_epoch(train_data, len(records), show_progress=False)
    trainer._valid_epoch(valid_data, show_progress=False)
    records[-1]["improved"] = False
    after_epoch_saved(records[-1]["epoch"], None)
fit_seconds = time.perf_counter() - fit_start


def rule_result(improved_key, valid_key):
    best = [r for r in records if r.get(improved_key)]
    best = best[-1] if best else records[-1]
    return {"best_epoch": best["epoch"], "seconds_to_best": best["elapsed"], "cpu_seconds_to_best": best["elapsed_cpu"],
            "valid": best[valid_key]}


def metrics(result):
    return {k: float(v) for k, v in result.items()}


t = time.perf_counter()
unmasked_rule = rule_result("improved", "valid")  # RecBole's own checkpoint, saved by fit()
unmasked_rule["test"] = metrics(trainer.evaluate(test_data, load_best_model=True, show_progress=False))
unmasked_rule["test_other_rule"] = metrics(evaluate_with(test_seen, trainer.evaluate, test_data, load_best_model=False,
                                                         show_progress=False))
unmasked_rule["epochs"] = fit_epochs
masked_rule = rule_result("improved_masked", "valid_masked")
model.load_state_dict(masked["state"])
masked_rule["test"] = metrics(evaluate_with(test_seen, trainer.evaluate, test_data, load_best_model=False,
                                            show_progress=False))
masked_rule["test_other_rule"] = metrics(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
masked_rule["epochs"] = masked["epochs"] or len(records)
test_seconds = time.perf_counter() - t
out = {
    "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                 "pandas": pandas.__version__, "python": sys.version.split()[0]},
    "torch_threads": threads_at_fit,
    "anomaly_detection_as_shipped": anomaly_as_shipped,
    "anomaly_detection_during_training": anomaly_at_fit,
    "data": data,
    "config": {k: config[k] for k in ["epochs", "train_batch_size", "eval_batch_size", "learning_rate", "learner",
                                      "weight_decay", "hidden_size", "inner_size", "n_layers", "n_heads",
                                      "hidden_dropout_prob", "attn_dropout_prob", "hidden_act", "loss_type",
                                      "MAX_ITEM_LIST_LENGTH", "stopping_step", "valid_metric", "topk", "seed",
                                      "metric_decimal_place"]},
    "eval_args": dict(config["eval_args"]),
    "n_parameters": int(sum(p.numel() for p in model.parameters())),
    "flops": float(flops) if flops is not None else None,
    "epochs_run": len(records),
    "capped": len(records) >= config["epochs"],
    "rules": {"masked": masked_rule, "unmasked": unmasked_rule},
    "fit_seconds": fit_seconds,
    "train_seconds": sum(r["train_seconds"] for r in records),
    "valid_seconds": sum(r.get("valid_seconds", 0.0) for r in records),
    "valid_masked_seconds": sum(r.get("valid_masked_seconds", 0.0) for r in records),
    "prep_seconds": prep_seconds,
    "test_seconds": test_seconds,
    "history": records,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "log_file": log_file,
}
with open(spec["result"], "w") as fh:
    json.dump(out, fh, indent=2)
say(f"done: {len(records)} epochs; test ndcg@10 {unmasked_rule['test']['ndcg@10']:.4f} (RecBole's rule, best epoch "
    f"{unmasked_rule['best_epoch']}), {masked_rule['test']['ndcg@10']:.4f} (masked, best epoch {masked_rule['best_epoch']})")
'''


def recbole_driver() -> str:
    """The RecBole-side driver script (run with the RecBole venv's python, one argument: a
    spec JSON with ``threads``, ``config``, ``result``, ``disable_anomaly_detection`` and,
    optionally, ``checkpoint``: a path it resumes from and writes after every epoch)."""
    return _DRIVER.replace("__SEEN_MASKS__", inspect.getsource(seen_masks))


# From shared/peers/recbole-ml100k.md: RecBole 1.2.1 SASRec, same config, no time guard.
PEER_CONVERGED_BEST_EPOCH = 27
PEER_SOURCE = "shared/peers/recbole-ml100k.md (RecBole SASRec uncapped run: best valid NDCG@10 0.0751 at epoch 27)"


def _fmt(x, nd=1):
    return "—" if x is None else f"{x:,.{nd}f}"


def comparison_report(env: dict, recbole: dict, genrecsys: dict, *, threads: int, recbole_epochs: int,
                      genrecsys_epochs: int | None) -> tuple[str, dict]:
    """The benchmark's printed report (environment, time, accuracy on both rules) and a
    summary dict of its ratios. ``recbole`` is the driver's result, ``genrecsys`` the
    result of :func:`genrecsys_sasrec_both_rules`; each carries its ``process`` figures."""
    rb, gr = recbole, genrecsys
    g_rules, r_rules = gr["rules"], rb["rules"]
    rb_epochs = rb["epochs_run"]
    rb_s_epoch = (rb["train_seconds"] + rb["valid_seconds"]) / rb_epochs  # RecBole's own validation only
    rb_train_epoch = rb["train_seconds"] / rb_epochs
    gm = g_rules["masked"]
    g_s_epoch, g_train_epoch = gm["seconds_per_epoch"], gm["train_seconds_per_epoch"]
    lines: list[str] = []
    add = lines.append
    add("## Environment")
    add(f"- CPU: {env['cpu']}, {env['cpus']} logical CPUs; load average at start {env['load_at_start']}")
    for name, r in (("genrecsys", gr), ("RecBole", rb)):
        pr = r["process"]
        add(f"- while {name} ran ({pr['wall_seconds']:.0f} s): it used {pr['cpus_used']:.2f} CPUs on average, other "
            f"processes {_fmt(pr['other_processes_cpus'], 2)} CPUs")
    add(f"- torch threads: requested {threads}; used by RecBole {rb['torch_threads']}, by genrecsys {gr['torch_threads']} "
        f"(torch.set_num_threads + OMP/MKL/OPENBLAS_NUM_THREADS={threads} in both processes)")
    rv, gv = rb["versions"], gr["versions"]
    add(f"- Python {gv['python']} (RecBole venv {rv['python']}); torch {gv['torch']} (RecBole venv: {rv['torch']}, "
        f"{'same install' if env['same_torch'] else 'DIFFERENT install'})")
    add(f"- RecBole {rv['recbole']} in {env['venv']}: numpy {rv['numpy']}, pandas {rv['pandas']}")
    add("- RecBole autograd anomaly detection during training: "
        + ("ON (as shipped: recbole/model/sequential_recommender/sine.py enables it at import)"
           if rb["anomaly_detection_during_training"] else
           "OFF (--recbole-no-anomaly-detection: the as-shipped quirk removed, same numbers, fewer seconds)"))
    add(f"- genrecsys {gv['genrecsys']} ({gv['git']}): numpy {gv['numpy']}, pandas {gv['pandas']}")
    d = rb["data"]
    add(f"- Data: ML-100K atomic files from the RecBole wheel ({d['data_path']}), read by both. RecBole: {d['users']} users, "
        f"{d['items']} items, {d['interactions']:,} interactions, {d['train_samples']:,} training prefixes; genrecsys: "
        f"{gr['data']['users']} users, {gr['data']['items']} items, {gr['data']['interactions']:,} interactions")
    rc, gc = rb["config"], gr["config"]
    add(f"- RecBole SASRec: batch {rc['train_batch_size']}, lr {rc['learning_rate']}, hidden {rc['hidden_size']}, "
        f"{rc['n_layers']} layers × {rc['n_heads']} heads, inner {rc['inner_size']}, dropout {rc['hidden_dropout_prob']}/"
        f"{rc['attn_dropout_prob']}, loss {rc['loss_type']}, max len {rc['MAX_ITEM_LIST_LENGTH']}, "
        f"{rb['n_parameters']:,} parameters; epochs {'cap ' + str(recbole_epochs) if recbole_epochs else 'until early stopping'}")
    mp = gc["model_params"]
    add(f"- genrecsys SASRec (defaults): batch {gc['batch_size']}, lr {gc['lr']}, embedding {mp.get('embedding_size')}, "
        f"{mp.get('n_layers')} layers × {mp.get('n_heads')} heads, dropout {mp.get('dropout')}, max len {gc['max_seq_len']}, "
        f"{gm['n_parameters']:,} parameters; epochs {'cap ' + str(genrecsys_epochs) if genrecsys_epochs else 'until early stopping'}")
    add("- Protocol (both): leave-one-out by time, full ranking over all items, seed 2020, patience 10 on valid NDCG@10 "
        "of the rule being judged. RecBole validates on both rules every epoch in one run (and trains on until both "
        "have stopped); genrecsys trains once per rule.")
    busy = [f"{name} {r['process']['other_processes_cpus']:.2f}" for name, r in (("genrecsys", gr), ("RecBole", rb))
            if (r["process"]["other_processes_cpus"] or 0) > 0.25]
    if busy:
        add(f"- WARNING: the machine was not idle (other processes' average CPUs during {', '.join(busy)}, of "
            f"{env['cpus']}): they competed for the cores, so these timings are inflated; measure again on an idle machine")
    add("")
    add("## Time per epoch (seconds, wall clock)")
    add(markdown_table(["", "RecBole 1.2.1", "genrecsys", "RecBole / genrecsys"], [
        ["s/epoch, training + validation (one rule)", _fmt(rb_s_epoch, 2), _fmt(g_s_epoch, 2), f"{rb_s_epoch / g_s_epoch:.1f}×"],
        ["s/epoch, training only", _fmt(rb_train_epoch, 2), _fmt(g_train_epoch, 2), f"{rb_train_epoch / g_train_epoch:.1f}×"],
        ["epochs run", f"{rb_epochs}{' (capped)' if rb['capped'] else ''}",
         " / ".join(f"{g_rules[r]['epochs']} ({r})" for r in RULES), ""],
        ["peak RSS (MB)", _fmt(rb["peak_rss_mb"], 0), _fmt(gr["peak_rss_mb"], 0), ""],
    ]))
    add("## Both rules: each system selected and tested on the rule (seconds to best include validation)")
    add(both_rules_table(rb, gr))
    projection = None
    if rb["capped"]:
        proj = PEER_CONVERGED_BEST_EPOCH * rb_s_epoch
        projection = {"epochs": PEER_CONVERGED_BEST_EPOCH, "s_per_epoch": rb_s_epoch, "seconds_lower_bound": proj,
                      "source": PEER_SOURCE}
        add(f"RecBole was capped at {rb_epochs} epoch(s): its figures above are not converged. PROJECTION (not "
            f"measured here): its uncapped run of this config ({PEER_SOURCE}) had its best checkpoint at epoch "
            f"{PEER_CONVERGED_BEST_EPOCH}, so its time to best is at least {PEER_CONVERGED_BEST_EPOCH} × "
            f"{rb_s_epoch:.1f} s = {proj:,.0f} s.")
    if genrecsys_epochs:
        add(f"genrecsys was capped at {genrecsys_epochs} epoch(s) (--genrecsys-epochs, development only).")
    summary = {"recbole_s_per_epoch": rb_s_epoch, "genrecsys_s_per_epoch": g_s_epoch,
               "ratio_s_per_epoch": rb_s_epoch / g_s_epoch, "ratio_train_s_per_epoch": rb_train_epoch / g_train_epoch,
               "recbole_capped": rb["capped"], "projection": projection,
               "rules": {rule: {"ratio_seconds_to_best": r_rules[rule]["seconds_to_best"] / g_rules[rule]["seconds_to_best"],
                                "test_ndcg10": {"recbole": r_rules[rule]["test"]["ndcg@10"],
                                                "genrecsys": g_rules[rule]["test"]["ndcg@10"]}}
                         for rule in RULES}}
    return "\n".join(lines), summary
