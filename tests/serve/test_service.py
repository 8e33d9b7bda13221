"""The serving core in-process: scoring, micro-batching, anonymous visitors, similar items, reload."""
from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
from serving import train_tiny

from genrecsys.errors import GenrecsysError
from genrecsys.serve.service import MicroBatcher, Service, load


@pytest.fixture(scope="module")
def runs(block_dataset_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-runs")
    return {"sasrec": train_tiny(block_dataset_dir, root / "sasrec"),
            "bpr": train_tiny(block_dataset_dir, root / "bpr", model="bpr", epochs=3)}


def test_top_k_excludes_every_known_interaction_and_matches_the_model_order(runs):
    import torch

    run = load("s", runs["sasrec"])
    q = run.user_query("u0", 5)
    (ranked,) = run.score([q])
    assert len(ranked.items) == 5 and not set(ranked.items) & set(q.seq.tolist()) and 0 not in ranked.items
    assert np.all(np.diff(ranked.scores) <= 0)
    # the same numbers as the model's own scores
    seq = torch.zeros(1, run.max_len, dtype=torch.long)
    seq[0, -len(q.seq[-run.max_len:]):] = torch.as_tensor(q.seq[-run.max_len:])
    with torch.no_grad():
        full = run.model.score(torch.as_tensor([q.user]), seq)[0]
    assert np.allclose(ranked.scores, full[ranked.items].numpy(), atol=1e-5)


def test_anonymous_visitors_are_scored_by_sequence_models_and_by_item_similarity_otherwise(runs):
    sasrec, bpr = load("s", runs["sasrec"]), load("b", runs["bpr"])
    assert not sasrec.model.reads_users() and bpr.model.reads_users()
    for run in (sasrec, bpr):
        q = run.visitor_query(["i1", "i2", "i3"], 4)
        (ranked,) = run.score([q])
        given = {run.item_index(i) for i in ("i1", "i2", "i3")}
        assert len(ranked.items) == 4 and not given & set(ranked.items.tolist())
    # BPR's rule: the sum of cosines to the visitor's items over its item embeddings
    v = bpr.cf_vectors()
    (r,) = bpr.score([bpr.visitor_query(["i1"], 3)])
    i1 = bpr.item_index("i1")
    expect = v @ v[i1]
    expect[[0, i1]] = -np.inf
    assert r.items.tolist() == np.argsort(-expect, kind="stable")[:3].tolist()
    with pytest.raises(GenrecsysError, match="unknown item 'nope'"):
        bpr.visitor_query(["nope"], 3)


def test_similar_items_are_nearest_by_cosine_and_never_the_item_itself(runs):
    run = load("b", runs["bpr"])
    i4 = run.item_index("i4")
    r = run.similar(i4, 5)
    assert len(r.items) == 5 and i4 not in r.items and 0 not in r.items and np.all(np.diff(r.scores) <= 0)


def test_micro_batcher_gathers_concurrent_calls_into_one_and_keeps_their_order():
    from concurrent.futures import ThreadPoolExecutor

    sizes = []
    ex = ThreadPoolExecutor(1)

    async def go(max_batch):
        b = MicroBatcher(lambda xs: [x * 10 for x in xs], ex, max_batch=max_batch, max_wait_ms=20,
                         on_batch=sizes.append)
        out = await asyncio.gather(*(b.submit(i) for i in range(10)))
        b.close()
        return out

    assert asyncio.run(go(4)) == [i * 10 for i in range(10)] and sizes == [4, 4, 2]
    sizes.clear()
    assert asyncio.run(go(1)) == [i * 10 for i in range(10)] and sizes == [1] * 10


def test_an_error_in_a_batch_reaches_every_caller_of_that_batch_only():
    from concurrent.futures import ThreadPoolExecutor

    def fn(xs):
        if -1 in xs:
            raise ValueError("bad query")
        return xs

    async def go():
        b = MicroBatcher(fn, ThreadPoolExecutor(1), max_batch=2, max_wait_ms=20)
        res = await asyncio.gather(b.submit(-1), b.submit(2), b.submit(3), return_exceptions=True)
        b.close()
        return res

    a, c, d = asyncio.run(go())
    assert isinstance(a, ValueError) and isinstance(c, ValueError) and (d == 3)


@pytest.fixture
def root(runs, tmp_path):
    """A runs root holding the SASRec run as ``a`` and the BPR run as ``b``."""
    shutil.copytree(runs["sasrec"], tmp_path / "root" / "a")
    shutil.copytree(runs["bpr"], tmp_path / "root" / "b")
    return tmp_path / "root"


def test_reload_swaps_a_new_run_in_and_a_broken_one_leaves_the_old_serving(root):
    svc = Service({"main": root / "a"}, root=root)
    old = svc.runs["main"]
    (root / "broken").mkdir()
    (root / "broken" / "model.pt").write_bytes(b"not a checkpoint")
    (root / "broken" / "config.yaml").write_text((root / "a" / "config.yaml").read_text())
    with pytest.raises(GenrecsysError, match="reload of main .* failed.*still serving sasrec-"):
        svc.reload("main", "broken")
    assert svc.runs["main"] is old
    with pytest.raises(GenrecsysError, match="outside the runs root"):
        svc.reload("main", "../elsewhere")
    with pytest.raises(KeyError):
        svc.reload("nope")
    versions = svc.reload("main", "b")
    assert svc.runs["main"].model_name == "bpr" and versions == {"main": svc.runs["main"].version}
    svc.close()


def test_a_batch_in_flight_during_a_reload_finishes_on_the_old_model(root):
    import time

    svc = Service({"main": root / "a"}, root=root)
    old = svc.runs["main"]
    expected = old.score([old.user_query("u0", 3)])[0].items.tolist()
    plain = old.score
    old.score = lambda qs: (time.sleep(0.5), plain(qs))[1]  # a slow model call, to reload under

    async def go():
        loop = asyncio.get_running_loop()
        task = loop.create_task(svc.rank("main", old.user_query("u0", 3)))
        await asyncio.sleep(0.1)  # the batch is being scored now
        await loop.run_in_executor(None, svc.reload, "main", "b")
        assert svc.runs["main"].model_name == "bpr"  # swapped while the old batch still runs
        return await task

    assert asyncio.run(go()).items.tolist() == expected
    svc.close()
