"""SASRec head to head: RecBole 1.2.1 vs genrecsys on MovieLens-100K, measured in ONE run
on this machine with the same number of torch threads, printed side by side with ratios.

    python benchmarks/sasrec_vs_recbole.py --threads 2 --recbole-epochs 3 --out results.json
    python benchmarks/sasrec_vs_recbole.py --threads 2 --recbole-epochs 0   # RecBole to convergence (> 1 h)

What it does
  1. Makes sure a RecBole 1.2.1 venv exists (benchmarks/recbole_env.sh VENV; default
     /tmp/recbole-venv, created on first use unless --no-setup). RecBole lives only there,
     never in this repository; the venv reuses this machine's CPU torch.
  2. genrecsys SASRec in a subprocess, twice: its defaults (ExperimentConfig(model="sasrec")),
     early stopping on validation NDCG@10 with patience 10, seed 2020, reading the very
     ml-100k atomic files shipped inside the RecBole wheel; once selecting on validation
     with seen items masked (its default rule), once with only padding masked (RecBole's
     rule for sequential models). Each selected model is tested on both rules.
  3. RecBole SASRec in a subprocess with the venv's python: a driver written at run time
     (genrecsys.stages.peers.recbole_driver) that follows recbole.quick_start.run_recbole
     step by step (Config, init_seed, create_dataset, data_preparation, get_model,
     get_flops, get_trainer, fit, evaluate with the best model) without importing ray.
     Protocol, as in shared/peers/recbole-ml100k.md: eval_args split LS valid_and_test,
     order TO, group_by user, mode full; metrics Hit/NDCG/MRR @5/10/20; valid_metric
     NDCG@10; stopping_step 10; Adam lr 1e-3; hidden_size 64; MAX_ITEM_LIST_LENGTH 50;
     train_batch_size 256; loss CE; train_neg_sample_args None; seed 2020; every rating is
     an interaction; RecBole's other SASRec defaults (2 layers, 2 heads, inner 256, dropout
     0.5/0.5). Every epoch it validates twice: RecBole's own rule (which drives its fit and
     checkpoint) and the masked rule (seen items set to -inf after full_sort_predict, the
     best state kept in memory, RecBole's early_stopping on it); after fit() it trains on
     until the masked rule has stopped too. That equals two runs: validation draws no
     random numbers. Per-epoch times and metrics are recorded by wrapping the trainer's
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
  process really used), a time table (s/epoch with and without validation, epochs run,
  peak RSS) with RecBole/genrecsys ratios, and per rule (selection and test on that rule):
  best epoch, seconds to best checkpoint, valid NDCG@10, test HR/NDCG/MRR@10 and the same
  checkpoint's test NDCG@10 on the other rule. "Seconds to best" is wall time from the
  start of training to the end of the validation that found the best checkpoint,
  validation included, on both sides (RecBole's includes its second validation).
  When RecBole is capped, the script also prints a PROJECTION of its time to best from
  shared/peers/recbole-ml100k.md (not measured here).

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
    spec = json.loads(Path(spec_path).read_text())
    import numpy
    import pandas
    import torch

    import genrecsys
    from genrecsys.stages.peers import genrecsys_sasrec_both_rules

    print(f"[genrecsys] training SASRec once per rule into {spec['run_dir']} (threads {spec['threads']})",
          file=sys.stderr, flush=True)
    out = genrecsys_sasrec_both_rules(spec["run_dir"], threads=spec["threads"], data_path=spec["data_path"],
                                      epochs=spec.get("epochs"))
    for rule, r in out["rules"].items():
        print(f"[genrecsys] {rule}: best epoch {r['best_epoch']} of {r['epochs']}, {r['seconds_to_best']:.0f} s to best, "
              f"test ndcg@10 {r['test']['ndcg@10']:.4f}", file=sys.stderr)
    out.update(versions={"genrecsys": getattr(genrecsys, "__version__", "?"), "git": _git_describe(),
                         "torch": torch.__version__, "numpy": numpy.__version__, "pandas": pandas.__version__,
                         "python": sys.version.split()[0]},
               torch_threads=torch.get_num_threads(),
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
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
                   help="where run directories, the RecBole driver, its log and checkpoint go (default: a new "
                        "/tmp/sasrec-vs-recbole-*); run again with the same --workdir to continue RecBole from "
                        "its last finished epoch")
    p.add_argument("--out", default=None, help="write all numbers as JSON here")
    p.add_argument("--reuse-recbole", metavar="OUT.json",
                   help="take RecBole's side from an earlier run's --out file instead of training it again (about an "
                        "hour and a half); the report says so, and its time ratios then span two runs")
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

    from genrecsys.stages.peers import comparison_report

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
              "run_dir": str(work / "genrecsys-runs"), "result": str(work / "genrecsys.json")}
    (work / "genrecsys-spec.json").write_text(json.dumps(g_spec))
    g_proc = run_child([sys.executable, str(Path(__file__).resolve()), "--child-genrecsys", str(work / "genrecsys-spec.json")],
                       args.threads, work, "genrecsys SASRec")
    gr = json.loads((work / "genrecsys.json").read_text())
    gr["process"] = g_proc

    if args.reuse_recbole:
        earlier = json.loads(Path(args.reuse_recbole).read_text())
        rb = earlier["recbole"]
        env["recbole_reused_from"] = f"{args.reuse_recbole} (started {earlier['env']['started']})"
    else:
        rb = run_recbole(args, venv, work)
    text, summary = comparison_report(env, rb, gr, threads=args.threads, recbole_epochs=args.recbole_epochs,
                                      genrecsys_epochs=args.genrecsys_epochs)
    if args.reuse_recbole:
        text = (f"RecBole's side is reused from {env['recbole_reused_from']}; genrecsys was trained in this run. "
                f"Time ratios compare two runs.\n\n" + text)
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"env": env, "args": vars(args), "summary": summary,
                                              "recbole": rb, "genrecsys": gr}, indent=2, default=str))
        print(f"\nwrote {args.out}", file=sys.stderr)


def run_recbole(args, venv: Path, work: Path) -> dict:
    from genrecsys.stages.peers import RECBOLE_SASREC_CONFIG, recbole_driver

    rb_dir = work / "recbole"
    rb_dir.mkdir(exist_ok=True)
    (rb_dir / "recbole_driver.py").write_text(recbole_driver())
    config = dict(RECBOLE_SASREC_CONFIG, epochs=args.recbole_epochs or 300, checkpoint_dir=str(rb_dir / "saved"))
    (rb_dir / "spec.json").write_text(json.dumps({"threads": args.threads, "config": config,
                                                  "result": str(rb_dir / "result.json"),
                                                  "checkpoint": str(rb_dir / "checkpoint.pt"),
                                                  "disable_anomaly_detection": args.recbole_no_anomaly_detection}))
    rb_proc = run_child([str(venv / "bin" / "python"), "-W", "ignore", str(rb_dir / "recbole_driver.py"),
                         str(rb_dir / "spec.json")], args.threads, rb_dir, "RecBole SASRec")
    rb = json.loads((rb_dir / "result.json").read_text())
    rb["process"] = rb_proc
    return rb


if __name__ == "__main__":
    main()
