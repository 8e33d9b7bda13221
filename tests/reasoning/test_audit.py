"""Rationale leakage, its redaction, pool quality and `genrecsys audit` on hand-made cases."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.splits import concat_parts, leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.reasoning.audit import leakage, named_items, pool_quality, redact
from genrecsys.reasoning.rationale import TitleCatalog


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def _history(split, u):
    return set(concat_parts(split.history("test"), split.test).of(u).tolist())


def test_leakage_counts_items_of_the_seeds_history_the_user_never_had(split):
    catalog = TitleCatalog.from_split(split)
    seed, other = 0, next(u for u in range(1, split.n_users) if _history(split, u) != _history(split, 0))
    seed_only = sorted(_history(split, seed) - _history(split, other))
    shared = sorted(_history(split, seed) & _history(split, other))
    listed = seed_only[:2] + shared[:1]
    step2 = "Items:\n" + "\n".join(f"{n}. {catalog.titles[i]}" for n, i in enumerate(listed, 1))
    a = pd.DataFrame({"user": [split.user_ids[other], split.user_ids[seed]], "user_index": [other, seed],
                      "seed_user": [split.user_ids[seed]] * 2, "seed_index": [seed, seed], "similarity": [0.9, 1.0],
                      "step1": ["likes these", "likes these"], "step2": [step2, step2]})
    summary, leaked = leakage(split, a, catalog)
    # the seed's own explanation is not "served to another user"; the other user gets 2 leaked items
    assert summary["explanations"] == 1 and summary["leaking"] == 1 and summary["leak_rate"] == 1.0
    assert leaked == {str(split.user_ids[other]): set(seed_only[:2])}
    assert named_items(step2, catalog) == set(listed)


def test_redaction_drops_numbered_lines_and_blanks_mentions():
    text = "Step 1: loves Fargo and Heat.\nItems:\n1. Fargo (1996)\n2. Casablanca (1942)"
    assert redact(text, ["Fargo"]) == "Step 1: loves another title and Heat.\nItems:\n2. Casablanca (1942)"
    assert redact(text, []) == text


def test_pool_quality_counts_unparsed_out_of_catalog_and_out_of_vocabulary():
    pool = pd.DataFrame({"parsed": [True, False], "item_names": [["A", "B", "C"], ["D"]],
                         "unmatched": [["C"], []], "categories": [["Drama", "Space"], []]})
    q = pool_quality(pool, ["Drama", "Comedy"])
    assert q == {"seeds": 2, "unparsed_rate": 0.5, "items_named": 4, "out_of_catalog_rate": 0.25,
                 "categories_named": 2, "out_of_vocabulary_rate": 0.5}


def test_audit_prints_a_variants_outputs_and_refuses_other_directories(tmp_path, capsys):
    from genrecsys.cli.main import main

    v = tmp_path / "up"
    v.mkdir()
    (v / "manifest.json").write_text(json.dumps({"name": "up", "steps": [
        {"task": "profile", "rows": 6, "parse_failures": 1, "format_failures": 1, "out_of_vocabulary": 2,
         "out_of_catalog": 0, "contract_violations": 0, "fallbacks": 0}]}))
    assert main(["audit", str(v)]) == 0
    assert "| profile | 6 | 1 | 1 | 2 | 0 | 0 | 0 |" in capsys.readouterr().out
    assert main(["audit", str(tmp_path)]) == 2  # the CLI's exit code for a GenrecsysError
    assert "not a RELAND run" in capsys.readouterr().err
    assert np.isnan(pool_quality(pd.DataFrame({"parsed": []}), [])["unparsed_rate"])


def test_served_explanations_lose_leaked_items_when_asked(split, tmp_path):
    from genrecsys.reasoning.run import explanations

    catalog = TitleCatalog.from_split(split)
    seed, other = 0, next(u for u in range(1, split.n_users) if _history(split, u) != _history(split, 0))
    leak = sorted(_history(split, seed) - _history(split, other))[0]
    keep = sorted(_history(split, other))[0]
    step2 = f"Items:\n1. {catalog.titles[leak]}\n2. {catalog.titles[keep]}"
    (tmp_path / "reland").mkdir()
    pd.DataFrame({"user": [split.user_ids[other]], "user_index": [other], "seed_user": [split.user_ids[seed]],
                  "seed_index": [seed], "similarity": [0.8], "step1": ["x"], "step2": [step2]}).to_parquet(
        tmp_path / "reland" / "assignment.parquet")
    u = str(split.user_ids[other])
    plain = explanations(tmp_path, [u])[u]
    safe = explanations(tmp_path, [u], redact_leaks=split)[u]
    assert catalog.titles[leak] in plain["recommended"] and plain["redacted"] == 0
    assert catalog.titles[leak] not in safe["recommended"] and catalog.titles[keep] in safe["recommended"]
    assert safe["redacted"] == 1
