from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.train.timing import PARTS, epoch_breakdown


def test_every_part_of_an_epoch_is_timed_and_they_add_up_to_the_total():
    split = leave_one_out(block_cycles(n_users=20))
    for name in ("sasrec", "bpr"):  # a sequence model (forward apart) and one whose loss is all
        r = epoch_breakdown(build_model(name, {"max_len": 8} if name == "sasrec" else {}, split), split,
                            epochs=2, batch_size=16, max_len=8)
        assert all(r[k] >= 0 for k in PARTS) and r["steps_per_epoch"] >= 1
        assert abs(r["total"] - sum(r[k] for k in PARTS)) < 1e-9
        assert (r["forward"] > 0) == (name == "sasrec") and r["backward"] > 0 and r["validation"] > 0
    bf16 = epoch_breakdown(build_model("sasrec", {"max_len": 8}, split), split, epochs=1, batch_size=16, max_len=8,
                           bf16=True)
    assert bf16["bf16"] and bf16["total"] > 0
