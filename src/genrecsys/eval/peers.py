"""Peer figures: RecBole 1.2.1 on ML-100K, leave-one-out, full ranking, measured on a
2-core CPU machine (torch 2.13 CPU, 2 threads) by this project. Rows marked
`converged=False` were stopped by a wall-clock guard and are lower bounds."""
from __future__ import annotations

RECBOLE_ML100K: dict[str, dict[str, float | bool]] = {
    "pop": {"hit@10": 0.0710, "ndcg@10": 0.0354, "mrr@10": 0.0246, "train_seconds": 0.3, "converged": True},
    "bpr": {"hit@10": 0.1241, "ndcg@10": 0.0673, "mrr@10": 0.0502, "train_seconds": 23, "converged": True},
    "neumf": {"hit@10": 0.1209, "ndcg@10": 0.0649, "mrr@10": 0.0479, "train_seconds": 159, "converged": True},
    "gru4rec": {"hit@10": 0.1220, "ndcg@10": 0.0594, "mrr@10": 0.0404, "train_seconds": 744, "converged": False},
    "sasrec": {"hit@10": 0.1294, "ndcg@10": 0.0623, "mrr@10": 0.0422, "train_seconds": 745, "converged": False},
    "bert4rec": {"hit@10": 0.0551, "ndcg@10": 0.0256, "mrr@10": 0.0168, "train_seconds": 589, "converged": False},
    "lightgcn": {"hit@10": 0.0923, "ndcg@10": 0.0489, "mrr@10": 0.0358, "train_seconds": 865, "converged": True},
}

