import numpy as np
import pytest

from genrecsys.files import Busy, building_file, exclusive


def test_building_file_publishes_only_a_complete_file(tmp_path):
    target = tmp_path / "states.npz"
    with pytest.raises(RuntimeError):
        with building_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed while writing")
    assert list(tmp_path.iterdir()) == []
    with building_file(target) as tmp:
        np.savez(tmp, x=np.arange(3))  # keeps the name: the temp path already ends in .npz
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states.npz"]
    with np.load(target) as z:
        assert z["x"].tolist() == [0, 1, 2]


def test_concurrent_writers_of_one_cache_entry_never_share_a_temp_file(tmp_path):
    # Two processes computing the same cache entry at once (two seeds of one variant):
    # with a fixed temp name the second writer truncated the first one's file mid-write.
    target = tmp_path / "vectors.npy"
    with building_file(target) as a, building_file(target) as b:
        assert a != b
        np.save(a, np.ones(4))
        np.save(b, np.zeros(4))
        assert np.load(a).tolist() == [1.0] * 4  # b's write did not touch a
    assert np.load(target).tolist() == [1.0] * 4  # the last to finish wins, complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.npy"]


def test_building_file_publishes_with_the_permissions_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with building_file(tmp_path / "built.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "built.txt").stat().st_mode == plain.stat().st_mode  # not mkstemp's 0600


def test_exclusive_refuses_a_path_another_process_holds_until_that_process_dies(tmp_path, other_process):
    target = tmp_path / "seed-2020"
    pid = other_process.hold(target)
    with pytest.raises(Busy, match=f"pid {pid}"):
        with exclusive(target):
            pass
    other_process.kill()  # killed, not exited: the lock goes with the process
    with exclusive(target):
        assert (tmp_path / ".seed-2020.lock").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing left to clean up


def test_exclusive_is_reentrant_within_one_process(tmp_path):
    with exclusive(tmp_path / "run"):
        with exclusive(tmp_path / "run"):  # e.g. a caller's claim, then run_experiment's own
            pass
        assert (tmp_path / ".run.lock").is_file()  # the inner block did not release the outer
