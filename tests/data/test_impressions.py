from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.impressions import construct_impressions, impression_split, impressions_for
from genrecsys.data.mind import load_mind
from genrecsys.data.schema import Dataset
from genrecsys.data.splits import concat_parts, leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from newsfixtures import MIND


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles(n_users=30, items_per_group=20, length=9))


def _rows(imp):
    for i in range(len(imp)):
        a, b = imp.indptr[i], imp.indptr[i + 1]
        yield int(imp.users[i]), imp.items[a:b], imp.labels[a:b]


def test_each_target_gets_one_click_and_k_distinct_never_interacted_items(split):
    imp = construct_impressions(split, "test", n_negatives=6, seed=1)
    everything = concat_parts(concat_parts(split.train, split.valid), split.test)
    assert sorted(imp.users.tolist()) == split.eval_users("test").tolist()
    for u, items, labels in _rows(imp):
        assert len(items) == 7 and labels.sum() == 1
        assert items[labels == 1][0] == split.test.of(u)[0]
        negs = items[labels == 0]
        assert len(set(negs.tolist())) == 6
        assert not set(negs.tolist()) & set(everything.of(u).tolist())
        assert (negs >= 1).all() and (negs <= split.n_items).all()


def test_the_draw_depends_only_on_the_seed(split):
    a = construct_impressions(split, "valid", 6, seed=3)
    b = construct_impressions(split, "valid", 6, seed=3)
    c = construct_impressions(split, "valid", 6, seed=4)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.items, c.items)


def test_the_click_is_not_always_in_the_same_position(split):
    imp = construct_impressions(split, "test", 6, seed=0)
    positions = [int(np.flatnonzero(labels)[0]) for _, _, labels in _rows(imp)]
    assert len(set(positions)) > 3


def _popularity_split():
    """Training counts: A 100, B 10, each x_t 1; f/g/y/z items are validation/test only."""
    rows = [(f"f{u}", i, t) for u in range(100) for t, i in enumerate(["A", f"f{u}", f"g{u}"])]
    rows += [(f"b{u}", i, t) for u in range(10) for t, i in enumerate(["B", f"h{u}", f"k{u}"])]
    rows += [(f"t{u}", i, t) for u in range(200) for t, i in enumerate([f"x{u}", f"y{u}", f"z{u}"])]
    return leave_one_out(Dataset("pop", pd.DataFrame(rows, columns=["user", "item", "timestamp"])))


def test_popularity_sampler_draws_in_proportion_to_training_counts():
    split = _popularity_split()
    imp = construct_impressions(split, "test", n_negatives=1, sampler="popularity", seed=0)
    counts = np.bincount(split.train.items, minlength=split.n_items + 1)
    negs = imp.items[imp.labels == 0]
    assert (counts[negs] > 0).all()  # never an item without training interactions
    t_users = np.char.startswith(split.user_ids[imp.users].astype(str), "t")
    names = split.item_ids[negs[t_users]]
    share_a, share_b = np.mean(names == "A"), np.mean(names == "B")
    assert 0.2 < share_a < 0.45  # expected 100 / 309
    assert share_a > 4 * share_b  # expected ratio 10


def test_uniform_sampler_ignores_popularity():
    split = _popularity_split()
    imp = construct_impressions(split, "test", n_negatives=1, sampler="uniform", seed=0)
    names = split.item_ids[imp.items[imp.labels == 0]]
    assert np.mean(names == "A") < 0.02  # 1 of ~1,000 items


def test_users_with_few_free_items_get_what_there_is():
    rows = [("a", f"i{i}", i) for i in range(1, 9)] + [("b", "i1", 0), ("b", "i2", 1), ("b", "i3", 2)]
    split = leave_one_out(Dataset("tiny", pd.DataFrame(rows, columns=["user", "item", "timestamp"])))
    imp = construct_impressions(split, "test", n_negatives=10, seed=0)
    sizes = dict(zip(split.user_ids[imp.users], imp.sizes()))
    assert sizes == {"b": 1 + 5}  # user a saw every item: nothing to show, skipped


def test_unknown_sampler_is_a_clear_error(split):
    with pytest.raises(GenrecsysError, match="uniform, popularity"):
        construct_impressions(split, "test", 4, sampler="zipf")


def test_constructed_impressions_are_cached_on_the_split(split):
    assert impressions_for(split, "test", 6, "uniform", 0) is impressions_for(split, "test", 6, "uniform", 0)


# ------------------------------------------------------------------------- logged (MIND)
@pytest.fixture(scope="module")
def mind_split():
    return impression_split(load_mind(MIND))


def _names(split, part, user):
    return split.item_ids[part.of(split.user_index(user))].tolist()


def test_training_sequences_are_history_then_training_clicks(mind_split):
    assert _names(mind_split, mind_split.train, "U1") == ["N1", "N3", "N2", "N10"]
    assert _names(mind_split, mind_split.train, "U3") == ["N7", "N9", "N9"]
    assert _names(mind_split, mind_split.train, "U6") == ["N7"]  # a dev-only user keeps their history


def test_dev_is_cut_in_time_into_validation_then_test(mind_split):
    # dev impressions 1-4 validate, 5-8 test (impression 6 has no click and is not evaluated)
    assert _names(mind_split, mind_split.valid, "U3") == ["N9", "N12"]
    assert _names(mind_split, mind_split.test, "U1") == ["N1"] and _names(mind_split, mind_split.valid, "U1") == ["N10"]
    valid, test = mind_split.meta["impressions"]["valid"], mind_split.meta["impressions"]["test"]
    assert len(valid) == 4 and len(test) == 3
    assert mind_split.user_ids[test.users].tolist() == ["U4", "U1", "U2"]
    assert "dev cut in time" in mind_split.meta["impression_stages"]


def test_logged_impressions_keep_their_candidates_and_labels(mind_split):
    valid = mind_split.meta["impressions"]["valid"]
    a, b = valid.indptr[0], valid.indptr[1]
    assert mind_split.item_ids[valid.items[a:b]].tolist() == ["N10", "N11", "N12", "N9"]
    assert valid.labels[a:b].tolist() == [1, 0, 0, 0]
    assert impressions_for(mind_split, "valid") is valid  # logged ones win over constructed


def test_training_impressions_know_where_their_clicks_start(mind_split):
    imp = mind_split.meta["train_impressions"]
    for i in range(len(imp)):
        u = imp.users[i]
        clicks = imp.items[imp.indptr[i]:imp.indptr[i + 1]][imp.labels[imp.indptr[i]:imp.indptr[i + 1]] == 1]
        seq = mind_split.train.of(u)
        assert seq[imp.hist_len[i]:imp.hist_len[i] + len(clicks)].tolist() == clicks.tolist()


def test_never_clicked_news_are_in_the_catalog(mind_split):
    assert "N11" in set(mind_split.item_ids)  # only ever shown, never clicked in training


def test_a_labelled_test_part_is_used_as_the_test_stage(tmp_path):
    import shutil

    shutil.copytree(MIND / "train", tmp_path / "train")
    shutil.copytree(MIND / "dev", tmp_path / "dev")
    shutil.copytree(MIND / "dev", tmp_path / "test")
    split = impression_split(load_mind(tmp_path))
    assert len(split.meta["impressions"]["valid"]) == 7 == len(split.meta["impressions"]["test"])


def test_one_part_is_cut_80_10_10_in_time(tmp_path):
    import shutil

    for f in ("news.tsv", "behaviors.tsv"):
        shutil.copy(MIND / "train" / f, tmp_path / f)
    split = impression_split(load_mind(tmp_path))
    # 8 impressions: 6 train, 1 valid (the 7th), 1 test (the 8th)
    assert len(split.meta["train_impressions"]) == 6
    assert split.user_ids[split.meta["impressions"]["test"].users].tolist() == ["U3"]


def test_split_impressions_needs_logged_impressions():
    with pytest.raises(GenrecsysError, match="needs logged impressions"):
        impression_split(block_cycles())


def test_impression_data_and_metrics_modules_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, genrecsys.data.mind, genrecsys.data.impressions, genrecsys.data.itemtext, "
            "genrecsys.data.profiles, genrecsys.eval.impressions;"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
