"""RELAND's experiment tables (``genrecsys.stages.reland_tables``, run by benchmarks/reland.py):
Table 2 end to end on tiny taste-group data against the real OpenAI-compatible test server,
each run one `genrecsys train` process, reused while its command is unchanged."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.stages.reland_tables import VARIANTS, RelandTables, run_command
from reasoning.reasoningdata import group_dataset


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "groups"
    group_dataset().save(path)
    return path


def settings(tmp_path, data_dir, server, minilm, **kw) -> RelandTables:
    return RelandTables(command="table2", dataset=str(data_dir), models=["sasrec"], seeds=1, max_epochs=1,
                        threads=1, backend="openai", base_url=server.url, llm_max_tokens=64, encoder_epochs=2,
                        text_encoder=minilm, runs_dir=str(tmp_path / "runs"), out_dir=str(tmp_path / "out"),
                        cache_dir=str(tmp_path / "cache"), **kw)


def test_table2_trains_each_row_once_tests_it_against_id_only_and_reuses_it(tmp_path, data_dir, server, minilm,
                                                                           capsys):
    cfg = settings(tmp_path, data_dir, server, minilm, variants=["+f_item", "RELAND"])
    md = run_command(cfg)
    rows = [line for line in md.splitlines() if line.startswith("| sasrec |")]
    assert [r.split("|")[2].strip() for r in rows] == ["ID-only", "+f_item", "RELAND"]  # ID-only added first
    assert rows[0].rstrip(" |").endswith("| - | -")  # the baseline has no test against itself
    data = json.loads((tmp_path / "out" / "reland_table2.json").read_text())
    reland = data["runs"]["sasrec/RELAND"]
    assert set(reland["p_vs_id"]) == {"ndcg@10", "hit@10"} and all(0.0 <= p <= 1.0 for p in reland["p_vs_id"].values())
    assert reland["llm"]["calls"] > 0 and "openai" in reland["dir"]  # another LLM than the default: its own run
    assert data["settings"]["variants"] == ["+f_item", "RELAND"] and (tmp_path / "out" / "reland_table2.png").is_file()
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")}
    assert len(done) == 3
    capsys.readouterr()
    assert run_command(cfg) == md  # nothing retrained, the same table
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")} == done
    assert capsys.readouterr().err.count("reuse") == 3
    run_command(settings(tmp_path, data_dir, server, minilm, variants=["ID-only"], seed_fraction=0.2))
    # ID-only does not use the pool: a new seed budget leaves it alone
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")} == done


def test_a_failing_run_and_unknown_names_are_one_line_errors(tmp_path, data_dir, server, minilm):
    with pytest.raises(GenrecsysError, match="no-such-model: `genrecsys train` failed"):
        run_command(replace(settings(tmp_path, data_dir, server, minilm, variants=["ID-only"]), models=["no-such-model"]))
    with pytest.raises(GenrecsysError, match="unknown RELAND variant"):
        RelandTables(variants=["RELAND-xl"]).resolved()
    with pytest.raises(GenrecsysError, match="unknown RELAND command"):
        run_command(RelandTables(command="table9"))
    assert RelandTables(command="sweep").resolved().models == ["sasrec"] and len(VARIANTS) == 5


def test_p_values_are_on_the_seeds_of_the_aggregates_the_table_shows(tmp_path):
    """A 1-seed table over directories a 2-seed command filled: p of seed 2020 only."""
    import numpy as np
    import pandas as pd

    from genrecsys.eval.significance import paired_tests
    from genrecsys.stages.reland_tables import p_values

    users = [f"u{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    values = {}
    for run, shift in (("base", 0.0), ("other", 0.05)):
        for seed in (2020, 2021):
            v = np.clip(0.3 + shift * (1 if seed == 2020 else -4) + rng.normal(0, 0.02, 8), 0, 1)
            values[run, seed] = v
            d = tmp_path / run / f"seed-{seed}"
            d.mkdir(parents=True)
            pd.DataFrame({"stage": "test", "user": users, "ndcg@10": v, "hit@10": v}).to_parquet(
                d / "per_user.parquet", index=False)
        (tmp_path / run / "metrics.json").write_text(json.dumps({"seeds": [2020], "test": {}}))
    p = p_values(tmp_path / "base", tmp_path / "other", ("ndcg@10",))
    assert p["ndcg@10"] == pytest.approx(paired_tests(values["base", 2020], values["other", 2020])["t_pvalue"])
