"""Retrieval: exact top-k as the reference, FAISS flat and HNSW against it, and every user
(seed, unseen or cold) getting the rationale of its most similar seed."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.reasoning.pool import ReasoningPool
from genrecsys.reasoning.retrieval import (assign_rationales, exact_nearest, faiss_nearest, nearest_seeds,
                                           recall_at_1)
from reasoningdata import matrix, split  # noqa: F401  (fixtures)


def brute_force(q, s, k):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sn = s / np.linalg.norm(s, axis=1, keepdims=True)
    sims = qn @ sn.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, 1)


def test_exact_top_k_matches_a_brute_force_reference_across_chunks():
    rng = np.random.default_rng(0)
    q, s = rng.normal(size=(300, 16)), rng.normal(size=(70, 16))
    idx, sim = exact_nearest(q, s, k=5, chunk=64)  # several chunks, one ragged
    ref_idx, ref_sim = brute_force(q, s, 5)
    assert np.array_equal(idx, ref_idx) and np.allclose(sim, ref_sim, atol=1e-5)
    assert (np.diff(sim, axis=1) <= 1e-6).all()  # best first


def test_equal_similarities_go_to_the_lower_seed_index():
    seeds = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])  # 0, 1, 3 point the same way
    idx, sim = nearest_seeds(np.array([[5.0, 0.0]]), seeds, k=3, method="exact")
    assert idx.tolist() == [[0, 1, 3]] and np.allclose(sim, 1.0)
    idx, _ = nearest_seeds(np.array([[5.0, 0.0]]), seeds, k=1)
    assert idx.tolist() == [[0]]


def test_faiss_flat_agrees_with_exact():
    rng = np.random.default_rng(1)
    q, s = rng.normal(size=(200, 32)), rng.normal(size=(500, 32))
    e_idx, e_sim = nearest_seeds(q, s, k=3, method="exact")
    f_idx, f_sim = nearest_seeds(q, s, k=3, method="faiss")  # 500 seeds: flat index
    assert np.allclose(f_sim, e_sim, atol=1e-4)
    assert recall_at_1(f_idx, e_idx, e_sim, f_sim) == 1.0


def test_faiss_hnsw_recall_at_1_against_exact_is_high():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(50, 32))
    s = centers[rng.integers(50, size=3000)] + 0.3 * rng.normal(size=(3000, 32))
    q = centers[rng.integers(50, size=500)] + 0.3 * rng.normal(size=(500, 32))
    e_idx, e_sim = exact_nearest(q, s)
    h_idx, h_sim = faiss_nearest(q, s, index="hnsw")
    assert recall_at_1(h_idx, e_idx, e_sim, h_sim) >= 0.95
    assert (h_sim[:, 0] <= e_sim[:, 0] + 1e-4).all()  # never better than the true best


@pytest.mark.parametrize("method", ["exact", "faiss"])
def test_empty_pool_and_dimension_mismatch_are_clear_errors(method):
    with pytest.raises(GenrecsysError, match="pool is empty"):
        nearest_seeds(np.ones((3, 4)), np.zeros((0, 4)), method=method)
    with pytest.raises(GenrecsysError, match="dimension mismatch: user vectors have d=4, the pool's seed vectors d=8"):
        nearest_seeds(np.ones((3, 4)), np.ones((2, 8)), method=method)
    with pytest.raises(GenrecsysError, match="k must be in 1..2"):
        nearest_seeds(np.ones((3, 4)), np.ones((2, 4)), k=3, method=method)


def test_unknown_method_is_rejected_naming_the_choices():
    with pytest.raises(GenrecsysError, match="auto, exact, faiss"):
        nearest_seeds(np.ones((1, 2)), np.ones((1, 2)), method="annoy")


def test_zero_vector_user_gets_the_first_seed_with_similarity_zero():
    idx, sim = nearest_seeds(np.zeros((1, 3)), np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert idx.tolist() == [[0]] and sim.tolist() == [[0.0]]


def make_pool(split, matrix, seeds):
    frame = pd.DataFrame({"user": seeds, "text": [f"text {u}" for u in seeds],
                          "step1": [f"summary {u}" for u in seeds], "step2": [f"recs {u}" for u in seeds]})
    return ReasoningPool(frame, matrix[np.asarray(seeds) + 1], {"dim": matrix.shape[1]})


def group_of(split, users):
    return np.array([int(split.user_ids[u][1:]) % 3 for u in np.ravel(users)])


def test_every_user_gets_the_rationale_of_its_most_similar_seed(split, matrix):
    seeds = [next(u for u in range(split.n_users) if group_of(split, [u])[0] == g) for g in range(3)]
    pool = make_pool(split, matrix, seeds)
    a = assign_rationales(pool, matrix)
    assert a.users.tolist() == list(range(split.n_users))
    assert (group_of(split, a.users) == group_of(split, a.seed_users[:, 0])).all()  # known right answer
    for u, s, text in zip(a.users, a.seed_users[:, 0], a.rationale):
        assert text == f"recs {s}"
    for s in seeds:  # a seed retrieves itself
        assert a.seed_users[s, 0] == s and a.similarity[s, 0] == pytest.approx(1.0, abs=1e-5)
    frame = a.frame()
    assert list(frame.columns) == ["user", "seed_user", "similarity", "rationale"] and len(frame) == split.n_users
    assert assign_rationales(pool, matrix, field="step1").rationale[seeds[0]] == f"summary {seeds[0]}"


def test_users_unseen_at_pool_building_get_a_rationale_by_retrieval(split, matrix):
    pool = make_pool(split, matrix, [0, 1, 2])
    grown = np.concatenate([matrix, [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]]).astype(np.float32)  # two new users
    new = np.array([split.n_users, split.n_users + 1])
    a = assign_rationales(pool, grown, users=new, k=2)
    assert a.users.tolist() == new.tolist() and a.seed_users.shape == (2, 2)
    assert a.rationale == [f"recs {s}" for s in a.seed_users[:, 0]]


def test_bad_retrieval_input_gives_clear_errors(split, matrix):
    pool = make_pool(split, matrix, [0, 1])
    with pytest.raises(GenrecsysError, match=f"user index {split.n_users} is out of range"):
        assign_rationales(pool, matrix, users=[0, split.n_users])
    with pytest.raises(GenrecsysError, match="out of range"):
        assign_rationales(pool, matrix, users=[-1])
    with pytest.raises(GenrecsysError, match="dimension mismatch"):
        assign_rationales(pool, np.ones((split.n_users + 1, 7)))
    empty = ReasoningPool(pool.frame.iloc[:0], pool.vectors[:0])
    with pytest.raises(GenrecsysError, match="pool is empty"):
        assign_rationales(empty, matrix)
    with pytest.raises(GenrecsysError, match="rationale field"):
        assign_rationales(pool, matrix, field="step3")
