"""ML-100K: the parser on tiny input, and (integration) the real data set."""
from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest

from genrecsys.data.movielens import load_ml100k, read_grouplens_100k
from genrecsys.data.splits import leave_one_out
from genrecsys.data.stats import dataset_stats, format_stats_table
from genrecsys.errors import GenrecsysError


def _write_u_data(directory, inter) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in
             zip(inter["user"], inter["item"], inter["rating"], inter["timestamp"])]
    (directory / "u.data").write_text("\n".join(lines) + "\n")


def test_malformed_u_data_line_names_file_and_line(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\n")
    with pytest.raises(GenrecsysError, match=r"u\.data:2: expected 4 fields"):
        read_grouplens_100k(tmp_path)


@pytest.mark.integration
def test_ml100k_has_the_published_counts(ml100k):
    assert (ml100k.n_users, ml100k.n_items, len(ml100k.interactions)) == (943, 1682, 100_000)
    stats = dataset_stats(ml100k)
    assert stats["avg_actions_per_user"] == pytest.approx(106.04, abs=0.01)
    assert format_stats_table({"ML-100K": stats}).splitlines()[-1] == "| ML-100K | 943 | 1,682 | 100,000 | 106.0 | 93.70% |"
    assert ml100k.titles()["1"] == "Toy Story"


@pytest.mark.integration
def test_ml100k_leave_one_out_evaluates_all_943_users(ml100k):
    split = leave_one_out(ml100k)
    assert len(split.eval_users("test")) == 943 == len(split.eval_users("valid"))
    assert split.train.nnz == 100_000 - 2 * 943


@pytest.mark.integration
def test_second_call_reads_the_parquet_cache_and_is_faster(ml100k, ml100k_cache, tmp_path):
    # A fresh cache that already holds the downloaded wheel: the first call parses it, no network.
    if (ml100k_cache / "downloads").is_dir():
        shutil.copytree(ml100k_cache / "downloads", tmp_path / "downloads")
    t0 = time.perf_counter()
    first = load_ml100k(cache_dir=tmp_path, try_grouplens=False)
    t1 = time.perf_counter()
    second = load_ml100k(cache_dir=tmp_path, try_grouplens=False)
    t2 = time.perf_counter()
    assert (tmp_path / "ml-100k" / "interactions.parquet").is_file()
    assert second.interactions.equals(first.interactions)
    pd.testing.assert_frame_equal(second.items, first.items, check_dtype=False)  # object vs str after Parquet
    assert t2 - t1 < t1 - t0


@pytest.mark.integration
def test_corrupted_file_given_by_path_fails_with_checksum_or_line_error(ml100k, tmp_path):
    inter = ml100k.interactions
    _write_u_data(tmp_path / "intact", inter)
    assert len(load_ml100k(path=tmp_path / "intact").interactions) == 100_000  # the writer is faithful

    changed = inter.copy()
    changed.loc[9, "rating"] = 1.0 if changed.loc[9, "rating"] != 1.0 else 2.0
    _write_u_data(tmp_path / "changed", changed)
    with pytest.raises(GenrecsysError, match="checksum mismatch"):
        load_ml100k(path=tmp_path / "changed")

    _write_u_data(tmp_path / "truncated", inter)
    lines = (tmp_path / "truncated" / "u.data").read_text().splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0]
    (tmp_path / "truncated" / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(GenrecsysError, match=r"u\.data:5: expected 4 fields"):
        load_ml100k(path=tmp_path / "truncated")
