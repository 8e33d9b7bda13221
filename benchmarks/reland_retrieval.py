"""RELAND retrieval at scale (issue 4, part 10): every user's nearest seed by cosine,
for millions of synthetic users against a large reasoning pool, on this machine.

Data: d-dimensional clustered Gaussians (``--clusters`` centres ~ N(0, I), points =
centre + N(0, sigma^2 I)), seeds and users drawn from the same mixture. Users are
generated chunk by chunk from per-chunk seeds, so neither the user matrix nor a
users x seeds score matrix is ever held whole (10M x 100k floats would be 4 TB).

Measured (wall time, peak RSS from resource.getrusage after each phase):

1. FAISS index over the seeds: HNSW (inner product on unit vectors, M = ``--hnsw-m``),
   build time; efSearch is tuned on the recall sample: the smallest of ``--ef`` whose
   recall@1 against exact search is >= ``--target-recall``;
2. exact search (genrecsys.reasoning.retrieval.exact_nearest, chunked matrix products) on
   the recall sample, the first ``--recall-users`` users, which is also the reference for
   recall@1 (a tie within 1e-6 in similarity counts as a hit);
3. all users through the index in chunks of ``--chunk``: time, users/s; the exact
   search time for all users is extrapolated from step 2 (``--exact-all`` measures it).

    # the real runs (minutes; not run on the busy 2-core machine):
    python benchmarks/reland_retrieval.py --users 1000000 --seeds 100000 --exact-all \\
        --out benchmarks/results/reland_retrieval_1m.json
    python benchmarks/reland_retrieval.py --users 10000000 --seeds 100000 \\
        --out benchmarks/results/reland_retrieval_10m.json
    # the smoke test that was run:
    python benchmarks/reland_retrieval.py --users 20000 --seeds 5000 --out /tmp/reland_retrieval_smoke.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Mixture:
    """A fixed Gaussian mixture; ``draw(n, seed)`` gives (n, d) float32 unit rows."""

    def __init__(self, d: int, k: int, sigma: float, seed: int = 0):
        self.centres = np.random.default_rng(seed).normal(size=(k, d)).astype(np.float32)  # (k, d)
        self.sigma = sigma

    def draw(self, n: int, seed: int) -> np.ndarray:
        from genrecsys.reasoning.retrieval import unit_rows

        rng = np.random.default_rng(seed)
        c = self.centres[rng.integers(len(self.centres), size=n)]
        return unit_rows(c + rng.normal(scale=self.sigma, size=c.shape).astype(np.float32))  # (n, d)


def user_chunks(mix: Mixture, n_users: int, chunk: int, seed: int):
    """(start, (B, d) users) for all users, deterministic per chunk."""
    for i, start in enumerate(range(0, n_users, chunk)):
        yield start, mix.draw(min(chunk, n_users - start), seed + 1 + i)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, default=100_000, help="reasoning-pool size")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clusters", type=int, default=1000, help="mixture components")
    p.add_argument("--sigma", type=float, default=0.5, help="within-cluster noise (centres are N(0, I))")
    p.add_argument("--chunk", type=int, default=100_000, help="users per search call")
    p.add_argument("--recall-users", type=int, default=20_000, help="users checked against exact search")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="efSearch values to try")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--exact-all", action="store_true", help="also time exact search over every user")
    p.add_argument("--exact-chunk", type=int, default=1024,
                   help="users per exact matrix product: (chunk, seeds) float32 scores, 400 MB at 1024 x 100k")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", help="write the results as JSON here (and a .md beside it)")
    args = p.parse_args()

    import faiss

    from genrecsys.reasoning.retrieval import exact_nearest, recall_at_1

    faiss.omp_set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    mix = Mixture(args.dim, args.clusters, args.sigma)
    res: dict = {"users": args.users, "seeds": args.seeds, "dim": args.dim, "clusters": args.clusters,
                 "sigma": args.sigma, "chunk": args.chunk, "threads": args.threads, "machine": platform.platform(),
                 "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "phases": {}}
    seeds = mix.draw(args.seeds, seed=10_000_000)  # (S, d); a seed stream no user chunk uses
    res["phases"]["data"] = {"peak_rss_mb": peak_rss_mb()}

    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    index.add(seeds)
    res["phases"]["hnsw_build"] = {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                                   "m": args.hnsw_m, "ef_construction": args.ef_construction}

    n_rec = min(args.recall_users, args.users)
    parts, have = [], 0
    for _, users in user_chunks(mix, args.users, args.chunk, seed=0):  # the first n_rec users step 3 searches
        parts.append(users[:n_rec - have])
        have += len(parts[-1])
        if have >= n_rec:
            break
    sample = np.concatenate(parts)  # (n_rec, d)
    t0 = time.perf_counter()
    ex_idx, ex_sim = exact_nearest(sample, seeds, k=1, chunk=args.exact_chunk)
    exact_s = time.perf_counter() - t0
    res["phases"]["exact_sample"] = {"users": n_rec, "seconds": exact_s, "users_per_s": n_rec / exact_s,
                                     "peak_rss_mb": peak_rss_mb()}

    tuning = []
    chosen = None
    for ef in sorted(args.ef):
        index.hnsw.efSearch = ef
        t0 = time.perf_counter()
        sim, idx = index.search(sample, 1)
        secs = time.perf_counter() - t0
        r = recall_at_1(idx.astype(np.int64), ex_idx, ex_sim, sim)
        tuning.append({"ef_search": ef, "recall_at_1": r, "users_per_s": n_rec / secs})
        if r >= args.target_recall:
            chosen = ef
            break
    if chosen is None:
        chosen = max(args.ef)
    res["phases"]["tuning"] = tuning
    res["ef_search"] = chosen
    res["recall_at_1"] = tuning[-1]["recall_at_1"]
    res["recall_sample"] = f"the first {n_rec} users vs exact search (ties within 1e-6 count as hits)"

    index.hnsw.efSearch = chosen
    t0 = time.perf_counter()
    checksum = 0.0
    for start, users in user_chunks(mix, args.users, args.chunk, seed=0):
        sim, idx = index.search(users, 1)  # (B, 1) each; only this chunk's answers are held
        checksum += float(sim.sum())
    secs = time.perf_counter() - t0
    res["phases"]["hnsw_all"] = {"users": args.users, "seconds": secs, "users_per_s": args.users / secs,
                                 "mean_similarity": checksum / args.users, "peak_rss_mb": peak_rss_mb(),
                                 "note": "includes generating the synthetic users chunk by chunk"}
    res["exact_all_extrapolated_s"] = exact_s * args.users / n_rec
    if args.exact_all:
        t0 = time.perf_counter()
        for start, users in user_chunks(mix, args.users, args.chunk, seed=0):
            exact_nearest(users, seeds, k=1, chunk=args.exact_chunk)
        secs = time.perf_counter() - t0
        res["phases"]["exact_all"] = {"users": args.users, "seconds": secs, "users_per_s": args.users / secs,
                                      "peak_rss_mb": peak_rss_mb()}
    res["peak_rss_mb"] = peak_rss_mb()

    ph = res["phases"]
    lines = [f"## RELAND retrieval: {args.users:,} users x {args.seeds:,} seeds, d={args.dim}, "
             f"{args.threads} thread(s)", "",
             "| step | users | seconds | users/s | peak RSS (MB) |", "|---|---|---|---|---|",
             f"| HNSW build (M={args.hnsw_m}, efC={args.ef_construction}) | - | {ph['hnsw_build']['seconds']:.1f} | - | "
             f"{ph['hnsw_build']['peak_rss_mb']:.0f} |",
             f"| exact, recall sample | {n_rec:,} | {exact_s:.1f} | {n_rec / exact_s:,.0f} | "
             f"{ph['exact_sample']['peak_rss_mb']:.0f} |",
             f"| HNSW efSearch={chosen}, all users | {args.users:,} | {ph['hnsw_all']['seconds']:.1f} | "
             f"{ph['hnsw_all']['users_per_s']:,.0f} | {ph['hnsw_all']['peak_rss_mb']:.0f} |"]
    if "exact_all" in ph:
        lines.append(f"| exact, all users | {args.users:,} | {ph['exact_all']['seconds']:.1f} | "
                     f"{ph['exact_all']['users_per_s']:,.0f} | {ph['exact_all']['peak_rss_mb']:.0f} |")
    else:
        lines.append(f"| exact, all users (extrapolated) | {args.users:,} | {res['exact_all_extrapolated_s']:.1f} | - | - |")
    lines += ["", f"recall@1 of HNSW (efSearch={chosen}) = {res['recall_at_1']:.4f} on {res['recall_sample']}; "
              "tuning: " + ", ".join(f"ef {t['ef_search']}: {t['recall_at_1']:.4f}" for t in tuning)]
    md = "\n".join(lines) + "\n"
    print(md)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        out.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
