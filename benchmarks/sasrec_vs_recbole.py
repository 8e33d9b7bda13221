"""SASRec head to head: RecBole 1.2.1 vs genrecsys on MovieLens-100K, measured in ONE run
on this machine with the same number of torch threads, printed side by side with ratios.

    python benchmarks/sasrec_vs_recbole.py --threads 2 --recbole-epochs 3 --out results.json
    python benchmarks/sasrec_vs_recbole.py --threads 2 --recbole-epochs 0   # RecBole to convergence (> 1 h)

What it does
  1. Makes sure a RecBole 1.2.1 venv exists (benchmarks/recbole_env.sh VENV; default
     /tmp/recbole-venv, created on first use unless --no-setup). RecBole lives only there,
     never in this repository; the venv reuses this machine's CPU torch.
  2. genrecsys SASRec in a subprocess: its defaults (run_experiment, ExperimentConfig(
     model="sasrec")), early stopping on validation NDCG@10 with patience 10, seed 2020,
     reading the very ml-100k atomic files shipped inside the RecBole wheel. The best model
     is then re-evaluated with EvalConfig(mask_seen=False), RecBole's rule for sequential
     models (only padding masked: seen items may be recommended).
  3. RecBole SASRec in a subprocess with the venv's python: a small driver written at run
     time into the work directory that follows recbole.quick_start.run_recbole step by step
     (Config, init_seed, create_dataset, data_preparation, get_model, get_flops, get_trainer,
     fit, evaluate with the best model) without importing ray. Protocol, as in
     shared/peers/recbole-ml100k.md: eval_args split LS valid_and_test, order TO, group_by
     user, mode full; metrics Hit/NDCG/MRR @5/10/20; valid_metric NDCG@10; stopping_step 10;
     Adam lr 1e-3; hidden_size 64; MAX_ITEM_LIST_LENGTH 50; train_batch_size 256; loss CE;
     train_neg_sample_args None; seed 2020; every rating is an interaction; RecBole's other
     SASRec defaults (2 layers, 2 heads, inner 256, dropout 0.5/0.5). Per-epoch training time,
     validation time and validation metrics are recorded by wrapping the trainer's
     _train_epoch/_valid_epoch; RecBole's own log is kept in the work directory.
     --recbole-epochs N caps RecBole at N epochs (~2 min each on an idle 2-core machine);
     --recbole-epochs 0 lets it run to its own early stopping (RecBole's epochs default 300).
     RecBole is measured AS SHIPPED by default, and that includes a quirk: importing
     recbole.model.sequential_recommender runs sine.py, which calls
     torch.autograd.set_detect_anomaly(True) for the whole process, so RecBole trains SASRec
     (and every sequential model that get_model/run_recbole loads; not BPR and the other
     general models) with autograd anomaly detection on; that roughly doubles its training
     time per batch here (0.36 vs 0.64-0.77 s per batch of 256 on one thread). --recbole-no-anomaly-detection
     switches it off after the model is built (same numbers, fewer seconds) to measure
     RecBole with that one quirk fixed; the output says which was measured.
  Both subprocesses get torch.set_num_threads(--threads) and OMP/MKL/OPENBLAS_NUM_THREADS.
  The machine should be otherwise idle: the CPU used by other processes while each system
  ran is measured (/proc/stat minus the child's own CPU time) and printed, with a warning
  when other work competed (two OpenMP threads on two shared cores slow down many-fold).

What it prints
  Environment (CPU, load average, Python, torch, numpy/pandas on each side, threads each
  process really used), a time table (s/epoch with and without validation, epochs run, best
  epoch, seconds to best checkpoint, peak RSS) with RecBole/genrecsys ratios, and test
  HR/NDCG/MRR@10 for RecBole and for genrecsys with seen items masked (its default) and
  without. "Seconds to best" is wall time from the start of training to the end of the
  validation that found the best checkpoint, validation included, on both sides.
  When RecBole is capped, its seconds to best say nothing about convergence, so the script
  also prints a PROJECTION taken from shared/peers/recbole-ml100k.md (not measured here):
  RecBole's uncapped run of the same config had its best validation NDCG@10 (0.0751) at
  epoch 27, so its time to best is at least 27 epochs x the s/epoch measured in this run.

--genrecsys-epochs N caps genrecsys too (development only; default: early stopping).
--out FILE writes every number (per-epoch records of both systems included) as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_SCRIPT = REPO / "benchmarks" / "recbole_env.sh"

# From shared/peers/recbole-ml100k.md: RecBole 1.2.1 SASRec, same config, no time guard.
PEER_CONVERGED_BEST_EPOCH = 27
PEER_CONVERGED_VALID_NDCG10 = 0.0751
PEER_SOURCE = "shared/peers/recbole-ml100k.md (RecBole SASRec uncapped run: best valid NDCG@10 0.0751 at epoch 27, ~60 min)"

RECBOLE_CONFIG = {
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

RECBOLE_DRIVER = r'''
"""Written at run time by genrecsys benchmarks/sasrec_vs_recbole.py: RecBole SASRec on ML-100K.

Follows recbole.quick_start.run_recbole step by step (same seeding order, so the numbers
match a run_recbole call) without importing recbole.quick_start, which pulls in ray.
"""
import json
import logging
import os
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
from recbole.utils import get_flops, get_model, get_trainer, init_logger, init_seed


def say(msg):
    print(f"[recbole] {msg}", file=sys.stderr, flush=True)


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
data = {"users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1), "interactions": int(dataset.inter_num),
        "data_path": os.path.normpath(config["data_path"])}
train_data, valid_data, test_data = data_preparation(config, dataset)
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
            test_users=int(test_data.sample_size))
say(f"data ready in {prep_seconds:.1f} s: {data}; torch threads {torch.get_num_threads()}; "
    f"autograd anomaly detection {'ON' if torch.is_anomaly_enabled() else 'off'}")

records = []
fit_start = None
orig_train, orig_valid = trainer._train_epoch, trainer._valid_epoch


def timed_train(train_data, epoch_idx, *args, **kwargs):
    t = time.perf_counter()
    loss = orig_train(train_data, epoch_idx, *args, **kwargs)
    records.append({"epoch": epoch_idx, "loss": float(sum(loss) if isinstance(loss, tuple) else loss),
                    "train_seconds": time.perf_counter() - t})
    return loss


def timed_valid(valid_data, *args, **kwargs):
    t = time.perf_counter()
    score, result = orig_valid(valid_data, *args, **kwargs)
    records[-1]["valid_seconds"] = time.perf_counter() - t
    records[-1]["valid"] = {k: float(v) for k, v in result.items()}
    return score, result


def after_epoch(epoch_idx, valid_score):
    r = records[-1]
    r["improved"] = trainer.cur_step == 0  # early_stopping reset the counter: a new best (>=)
    r["elapsed"] = time.perf_counter() - fit_start
    say(f"epoch {epoch_idx}: train {r['train_seconds']:.1f} s, valid {r['valid_seconds']:.1f} s, loss {r['loss']:.4f}, "
        f"valid ndcg@10 {r['valid']['ndcg@10']:.4f}{' (best)' if r['improved'] else ''}, elapsed {r['elapsed']:.0f} s")


trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
threads_at_fit = torch.get_num_threads()
anomaly_at_fit = torch.is_anomaly_enabled()
fit_start = time.perf_counter()
best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                                  callback_fn=after_epoch)
fit_seconds = time.perf_counter() - fit_start
t = time.perf_counter()
test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
test_seconds = time.perf_counter() - t
best = [r for r in records if r.get("improved")]
best = best[-1] if best else records[-1]
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
    "stopped_by": "early_stopping" if len(records) < config["epochs"] else "epochs",
    "best_epoch": best["epoch"],
    "seconds_to_best": best["elapsed"],
    "fit_seconds": fit_seconds,
    "train_seconds": sum(r["train_seconds"] for r in records),
    "valid_seconds": sum(r.get("valid_seconds", 0.0) for r in records),
    "prep_seconds": prep_seconds,
    "test_seconds": test_seconds,
    "best_valid": {k: float(v) for k, v in (best_valid_result or {}).items()},
    "test": {k: float(v) for k, v in test_result.items()},
    "history": records,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "log_file": log_file,
}
with open(spec["result"], "w") as fh:
    json.dump(out, fh, indent=2)
say(f"done: {len(records)} epochs, best epoch {best['epoch']}, test ndcg@10 {out['test']['ndcg@10']:.4f}")
'''

PROBE = r'''
import json, os, sys, torch, numpy, pandas, recbole
from recbole.model.sequential_recommender import SASRec
d = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
print(json.dumps({"recbole": recbole.__version__, "torch": torch.__version__, "torch_file": torch.__file__,
                  "numpy": numpy.__version__, "pandas": pandas.__version__, "python": sys.version.split()[0],
                  "data_path": d, "data_ok": os.path.isfile(os.path.join(d, "ml-100k.inter"))}))
'''


# --------------------------------------------------------------------------- genrecsys child
def genrecsys_child(spec_path: str) -> None:
    from dataclasses import asdict, replace

    spec = json.loads(Path(spec_path).read_text())
    import numpy
    import pandas
    import torch

    import genrecsys
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.experiment import load_run, run_experiment
    from genrecsys.registry import MODELS
    from genrecsys.train.loop import evaluate

    train = TrainConfig(threads=spec["threads"], progress=False)
    if spec.get("epochs"):
        train = replace(train, epochs=spec["epochs"])
    data = DataConfig(path=spec["data_path"]) if spec.get("data_path") else DataConfig()
    cfg = ExperimentConfig(model="sasrec", data=data, train=train)
    run_dir = Path(spec["run_dir"])
    print(f"[genrecsys] training SASRec (epochs cap {train.epochs}, patience {train.patience}, "
          f"threads {spec['threads']}) into {run_dir}", file=sys.stderr, flush=True)
    metrics = run_experiment(cfg, run_dir)
    threads_used = torch.get_num_threads()
    history = json.loads((run_dir / "history.json").read_text())
    for r in history:
        if "valid" in r:
            print(f"[genrecsys] epoch {r['epoch']}: train {r['train_seconds']:.1f} s, loss {r['loss']:.4f}, "
                  f"valid ndcg@10 {r['valid']['ndcg@10']:.4f}", file=sys.stderr)
    # Re-evaluate the restored best model with RecBole's rule for sequential models.
    _, split, model = load_run(run_dir)
    torch.set_num_threads(spec["threads"])
    t = time.perf_counter()
    unmasked = {s: evaluate(model, split, s, replace(cfg.eval, mask_seen=False), cfg.data.max_seq_len).metrics
                for s in ("valid", "test")}
    masked_again = evaluate(model, split, "test", cfg.eval, cfg.data.max_seq_len).metrics
    reeval_seconds = time.perf_counter() - t
    model_cls = MODELS.get("sasrec")
    out = {
        "versions": {"genrecsys": getattr(genrecsys, "__version__", "?"), "git": _git_describe(),
                     "torch": torch.__version__, "numpy": numpy.__version__, "pandas": pandas.__version__,
                     "python": sys.version.split()[0]},
        "torch_threads": threads_used,
        "data": {"users": int(split.dataset.n_users), "items": int(split.dataset.n_items),
                 "interactions": int(len(split.dataset.interactions)), "protocol": split.protocol,
                 "data_path": spec.get("data_path")},
        "config": {"model_params": asdict(model_cls.Config()), "batch_size": train.batch_size or model_cls.default_batch_size,
                   "lr": train.lr if train.lr is not None else model_cls.default_lr, "epochs": train.epochs,
                   "patience": train.patience, "metric": train.metric, "seed": train.seed,
                   "max_seq_len": cfg.data.max_seq_len, "ks": list(cfg.eval.ks)},
        "metrics": metrics,
        "test_unmasked": unmasked["test"],
        "valid_unmasked": unmasked["valid"],
        "reload_check_max_abs_diff": max(abs(masked_again[k] - metrics["test"][k]) for k in masked_again),
        "reeval_seconds": reeval_seconds,
        "history": history,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(spec["result"]).write_text(json.dumps(out, indent=2))


def _git_describe() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except Exception:
        return "?"


# --------------------------------------------------------------------------- parent
def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def probe_venv(venv: Path) -> dict | None:
    py = venv / "bin" / "python"
    if not py.is_file():
        return None
    proc = subprocess.run([str(py), "-W", "ignore", "-c", PROBE], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return info if info["recbole"] == "1.2.1" and info["data_ok"] else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (/proc/stat), None where unreadable."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def run_child(cmd: list[str], threads: int, cwd: Path, name: str) -> dict:
    """Run one measured process; also measure how much CPU everything else took meanwhile."""
    print(f"\n== {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    before_busy, before_self = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(threads))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see the output above")
    after_busy, after_self = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after_self.ru_utime + after_self.ru_stime) - (before_self.ru_utime + before_self.ru_stime)
    other = None if before_busy is None or after_busy is None else max(after_busy - before_busy - own, 0.0) / wall
    return {"wall_seconds": wall, "cpu_seconds": own, "cpus_used": own / wall, "other_processes_cpus": other}


def fmt(x, nd=1, suffix=""):
    return "—" if x is None else f"{x:,.{nd}f}{suffix}"


def ratio(a, b):
    return f"{a / b:.1f}×" if a is not None and b else "—"


def summarize(env: dict, rb: dict, gr: dict, args) -> tuple[str, dict]:
    gm = gr["metrics"]
    rb_epochs = rb["epochs_run"]
    g_epochs = gm["epochs"]
    rb_s_epoch = (rb["train_seconds"] + rb["valid_seconds"]) / rb_epochs
    rb_train_epoch = rb["train_seconds"] / rb_epochs
    g_s_epoch = gm["seconds_per_epoch"]
    g_train_epoch = sum(r["train_seconds"] for r in gr["history"]) / max(len(gr["history"]), 1)
    rb_capped = rb["stopped_by"] != "early_stopping"
    g_capped = gm["stopped_by"] != "early_stopping"
    lines = []
    add = lines.append
    add("## Environment")
    add(f"- CPU: {env['cpu']}, {env['cpus']} logical CPUs; load average at start {env['load_at_start']}")
    for name, r in (("genrecsys", gr), ("RecBole", rb)):
        pr = r["process"]
        add(f"- while {name} ran ({pr['wall_seconds']:.0f} s): it used {pr['cpus_used']:.2f} CPUs on average, other "
            f"processes {fmt(pr['other_processes_cpus'], 2)} CPUs")
    add(f"- torch threads: requested {args.threads}; used by RecBole {rb['torch_threads']}, by genrecsys {gr['torch_threads']} "
        f"(torch.set_num_threads + OMP/MKL/OPENBLAS_NUM_THREADS={args.threads} in both processes)")
    rv, gv = rb["versions"], gr["versions"]
    add(f"- Python {gv['python']} (RecBole venv {rv['python']}); torch {gv['torch']} (RecBole venv: {rv['torch']}, "
        f"{'same install' if env['same_torch'] else 'DIFFERENT install'})")
    add(f"- RecBole {rv['recbole']} in {env['venv']}: numpy {rv['numpy']}, pandas {rv['pandas']}")
    add(f"- RecBole autograd anomaly detection during training: "
        f"{'ON (as shipped: recbole/model/sequential_recommender/sine.py enables it at import)' if rb['anomaly_detection_during_training'] else 'OFF (--recbole-no-anomaly-detection: the as-shipped quirk removed)'}")
    add(f"- genrecsys {gv['genrecsys']} ({gv['git']}): numpy {gv['numpy']}, pandas {gv['pandas']}")
    d = rb["data"]
    add(f"- Data: ML-100K atomic files from the RecBole wheel ({d['data_path']}), read by both. RecBole: {d['users']} users, "
        f"{d['items']} items, {d['interactions']:,} interactions, {d['train_samples']:,} training prefixes; genrecsys: "
        f"{gr['data']['users']} users, {gr['data']['items']} items, {gr['data']['interactions']:,} interactions")
    rc, gc = rb["config"], gr["config"]
    add(f"- RecBole SASRec: batch {rc['train_batch_size']}, lr {rc['learning_rate']}, hidden {rc['hidden_size']}, "
        f"{rc['n_layers']} layers × {rc['n_heads']} heads, inner {rc['inner_size']}, dropout {rc['hidden_dropout_prob']}/"
        f"{rc['attn_dropout_prob']}, loss {rc['loss_type']}, max len {rc['MAX_ITEM_LIST_LENGTH']}, "
        f"{rb['n_parameters']:,} parameters; epochs {'cap ' + str(args.recbole_epochs) if args.recbole_epochs else 'until early stopping'}")
    mp = gc["model_params"]
    add(f"- genrecsys SASRec (defaults): batch {gc['batch_size']}, lr {gc['lr']}, embedding {mp.get('embedding_size')}, "
        f"{mp.get('n_layers')} layers × {mp.get('n_heads')} heads, dropout {mp.get('dropout')}, max len {gc['max_seq_len']}, "
        f"{gm['n_parameters']:,} parameters; epochs {'cap ' + str(args.genrecsys_epochs) if args.genrecsys_epochs else 'until early stopping'}")
    add("- Protocol (both): leave-one-out by time, full ranking over all items, model selection on valid NDCG@10, "
        "patience 10, seed 2020")
    busy = [f"{name} {r['process']['other_processes_cpus']:.2f}" for name, r in (("genrecsys", gr), ("RecBole", rb))
            if (r["process"]["other_processes_cpus"] or 0) > 0.25]
    if busy:
        add(f"- WARNING: the machine was not idle (other processes' average CPUs during {', '.join(busy)}, "
            f"of {env['cpus']}): they competed for the cores, so these timings are inflated, unevenly between the "
            f"systems; measure again on an idle machine")
    add("")
    add("## Time (seconds, wall clock)")
    add("| | RecBole 1.2.1 | genrecsys | RecBole / genrecsys |")
    add("|---|---|---|---|")
    add(f"| s/epoch, training + validation | {fmt(rb_s_epoch, 2)} | {fmt(g_s_epoch, 2)} | {ratio(rb_s_epoch, g_s_epoch)} |")
    add(f"| s/epoch, training only | {fmt(rb_train_epoch, 2)} | {fmt(g_train_epoch, 2)} | {ratio(rb_train_epoch, g_train_epoch)} |")
    add(f"| epochs run | {rb_epochs}{' (capped)' if rb_capped else ' (early stopping)'} | "
        f"{g_epochs}{' (capped)' if g_capped else ' (early stopping)'} | |")
    add(f"| best epoch (0-based) | {rb['best_epoch']} | {gm['best_epoch']} | |")
    to_best_note = " (within the cap: not converged)" if rb_capped else ""
    add(f"| seconds to best checkpoint | {fmt(rb['seconds_to_best'])}{to_best_note} | {fmt(gm['seconds_to_best'])}"
        f"{' (capped)' if g_capped else ''} | {ratio(rb['seconds_to_best'], gm['seconds_to_best']) if not rb_capped else '— (RecBole capped)'} |")
    add(f"| training wall (all epochs) | {fmt(rb['fit_seconds'])} | {fmt(gm['train_seconds'])} | |")
    add(f"| data preparation (not in the above) | {fmt(rb['prep_seconds'])} | "
        f"{fmt(gm['total_seconds'] - gm['train_seconds'])} (load + final evaluation) | |")
    add(f"| peak RSS (MB) | {fmt(rb['peak_rss_mb'], 0)} | {fmt(gr['peak_rss_mb'], 0)} | |")
    add("")
    projection = None
    if rb_capped:
        proj = PEER_CONVERGED_BEST_EPOCH * rb_s_epoch
        projection = {"epochs": PEER_CONVERGED_BEST_EPOCH, "s_per_epoch": rb_s_epoch, "seconds_lower_bound": proj,
                      "ratio_lower_bound": proj / gm["seconds_to_best"] if gm["seconds_to_best"] else None,
                      "source": PEER_SOURCE}
        add(f"PROJECTION (lower bound, not measured in this run): RecBole was capped at {rb_epochs} epoch(s). Its uncapped "
            f"run with this config, reported in {PEER_SOURCE}, reached its best checkpoint at epoch "
            f"{PEER_CONVERGED_BEST_EPOCH} (RecBole counts from 0, so 28 epochs were trained; 27 is the conservative bound). "
            f"RecBole time to best ≥ {PEER_CONVERGED_BEST_EPOCH} epochs × {rb_s_epoch:.1f} s/epoch (measured here) = "
            f"{proj:,.0f} s ({proj / 60:.0f} min), i.e. ≥ {ratio(proj, gm['seconds_to_best'])} genrecsys's measured "
            f"{gm['seconds_to_best']:.0f} s to best{' (genrecsys capped too)' if g_capped else ''}.")
        add("")
    add("## Test accuracy (best-validation checkpoint)")
    add("| metric | RecBole 1.2.1 (masks only padding) | genrecsys, seen items masked (default) | "
        "genrecsys, unmasked (RecBole's rule) |")
    add("|---|---|---|---|")
    for k in ("hit@10", "ndcg@10", "mrr@10"):
        add(f"| {k.upper().replace('HIT', 'HR')} | {rb['test'][k]:.4f} | {gm['test'][k]:.4f} | {gr['test_unmasked'][k]:.4f} |")
    add(f"| valid NDCG@10 (selection) | {rb['best_valid'].get('ndcg@10', float('nan')):.4f} | {gm['valid']['ndcg@10']:.4f} | "
        f"{gr['valid_unmasked']['ndcg@10']:.4f} |")
    if rb_capped:
        add(f"\nRecBole is capped at {rb_epochs} epoch(s): its accuracy above is not converged (its uncapped run reached "
            f"valid NDCG@10 {PEER_CONVERGED_VALID_NDCG10}, {PEER_SOURCE}).")
    if g_capped:
        add(f"\ngenrecsys was capped at {g_epochs} epoch(s) (--genrecsys-epochs, development only).")
    if gr["reload_check_max_abs_diff"] > 1e-6:
        add(f"\nWARNING: re-loaded genrecsys model differs from the run's metrics by {gr['reload_check_max_abs_diff']:.2e}")
    summary = {"recbole_s_per_epoch": rb_s_epoch, "recbole_train_s_per_epoch": rb_train_epoch,
               "genrecsys_s_per_epoch": g_s_epoch, "genrecsys_train_s_per_epoch": g_train_epoch,
               "ratio_s_per_epoch": rb_s_epoch / g_s_epoch, "ratio_train_s_per_epoch": rb_train_epoch / g_train_epoch,
               "recbole_capped": rb_capped, "genrecsys_capped": g_capped,
               "ratio_seconds_to_best": None if rb_capped else rb["seconds_to_best"] / gm["seconds_to_best"],
               "projection": projection}
    return "\n".join(lines), summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads for both systems (default 2)")
    p.add_argument("--recbole-epochs", type=int, default=3,
                   help="cap RecBole at N epochs (default 3, ~2 min each on an idle 2-core machine); 0 = until its own early stopping")
    p.add_argument("--genrecsys-epochs", type=int, default=None,
                   help="cap genrecsys at N epochs (development only); default: until early stopping")
    p.add_argument("--recbole-no-anomaly-detection", action="store_true",
                   help="switch off the autograd anomaly detection that RecBole 1.2.1 turns on at import (sine.py); "
                        "default: measure RecBole as shipped")
    p.add_argument("--venv", default="/tmp/recbole-venv", help="RecBole 1.2.1 venv (default /tmp/recbole-venv)")
    p.add_argument("--no-setup", action="store_true", help="fail instead of running recbole_env.sh when the venv is missing")
    p.add_argument("--workdir", default=None,
                   help="where run directories, the RecBole driver and its log go (default: a new /tmp/sasrec-vs-recbole-*)")
    p.add_argument("--out", default=None, help="write all numbers as JSON here")
    p.add_argument("--child-genrecsys", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_genrecsys:
        genrecsys_child(args.child_genrecsys)
        return
    if args.threads < 1 or args.recbole_epochs < 0 or (args.genrecsys_epochs is not None and args.genrecsys_epochs < 1):
        p.error("--threads >= 1, --recbole-epochs >= 0 and --genrecsys-epochs >= 1 are required")

    venv = Path(args.venv).resolve()
    info = probe_venv(venv)
    if info is None:
        if args.no_setup:
            raise SystemExit(f"{venv}: no working RecBole 1.2.1 venv; run: bash {ENV_SCRIPT} {venv}")
        print(f"== setting up RecBole venv: bash {ENV_SCRIPT} {venv}", file=sys.stderr, flush=True)
        subprocess.run(["bash", str(ENV_SCRIPT), str(venv)], check=True)
        info = probe_venv(venv)
        if info is None:
            raise SystemExit(f"{venv}: RecBole 1.2.1 still not importable after {ENV_SCRIPT}")
    import torch

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sasrec-vs-recbole-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {"cpu": cpu_model(), "cpus": os.cpu_count(), "machine": platform.machine(), "threads": args.threads,
           "python": platform.python_version(), "torch": torch.__version__, "venv": str(venv), "recbole_probe": info,
           "same_torch": Path(info["torch_file"]).resolve() == Path(torch.__file__).resolve(), "workdir": str(work),
           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load_at_start": " / ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(f"== work directory: {work}", file=sys.stderr, flush=True)

    # genrecsys first (minutes), then RecBole (about 2 minutes per epoch on 2 cores).
    g_spec = {"threads": args.threads, "epochs": args.genrecsys_epochs, "data_path": info["data_path"],
              "run_dir": str(work / "genrecsys-run"), "result": str(work / "genrecsys.json")}
    (work / "genrecsys-spec.json").write_text(json.dumps(g_spec))
    g_proc = run_child([sys.executable, str(Path(__file__).resolve()), "--child-genrecsys", str(work / "genrecsys-spec.json")],
                       args.threads, work, "genrecsys SASRec")
    gr = json.loads((work / "genrecsys.json").read_text())
    gr["process"] = g_proc

    rb_dir = work / "recbole"
    rb_dir.mkdir(exist_ok=True)
    (rb_dir / "recbole_driver.py").write_text(RECBOLE_DRIVER)
    config = dict(RECBOLE_CONFIG, epochs=args.recbole_epochs or 300, checkpoint_dir=str(rb_dir / "saved"))
    (rb_dir / "spec.json").write_text(json.dumps({"threads": args.threads, "config": config,
                                                  "result": str(rb_dir / "result.json"),
                                                  "disable_anomaly_detection": args.recbole_no_anomaly_detection}))
    rb_proc = run_child([str(venv / "bin" / "python"), "-W", "ignore", str(rb_dir / "recbole_driver.py"),
                         str(rb_dir / "spec.json")], args.threads, rb_dir, "RecBole SASRec")
    rb = json.loads((rb_dir / "result.json").read_text())
    rb["process"] = rb_proc

    text, summary = summarize(env, rb, gr, args)
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"env": env, "args": vars(args), "summary": summary,
                                              "recbole": rb, "genrecsys": gr}, indent=2, default=str))
        print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
