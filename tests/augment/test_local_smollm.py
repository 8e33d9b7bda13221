"""The embedded SmolLM2-135M through the summarizer on two real ML-100K items: whatever the
small model writes, every row ends enhanced or as a counted failure, never as a guess."""
import pytest

from genrecsys.augment import AugmentConfig, SummarizeConfig, Variant, augment, load_variant, read_artefacts
from genrecsys.config import LLMConfig
from genrecsys.llm.client import LLM


@pytest.mark.integration
def test_embedded_model_summaries_are_used_or_counted_and_rerun_is_free(ml100k, ml100k_cache, tmp_path):
    llm = LLM(LLMConfig(batch_size=2), cache_dir=ml100k_cache, cache_path=tmp_path / "cache.sqlite")
    cfg = AugmentConfig(summarize=SummarizeConfig(limit=2))
    try:
        out = augment("summarize", Variant(ml100k, source="ml-100k"), tmp_path / "ns", llm, cfg)
        again = load_variant(augment("summarize", Variant(ml100k, source="ml-100k"), tmp_path / "ns2", llm, cfg))
    finally:
        llm.close()
    v = load_variant(out)
    m = v.manifest
    assert m["llm"]["backend"] == "local" and m["llm"]["model"].startswith("SmolLM2-135M") and m["cost_total"] == 0
    arts = read_artefacts(out)
    assert len(arts) == m["rows"] == 2
    items = v.dataset.items.set_index("item")
    for a in arts:
        row = items.loc[a["id"]]
        if a["error"]:
            assert row["title"] == row["title_original"]  # a failure keeps the original title
        else:
            assert row["title"] == a["parsed"] and a["parsed"].strip()
    assert m["parse_failures"] == sum(1 for a in arts if a["error"] and a["error"].startswith("parse:"))
    rest = v.dataset.items.iloc[2:]
    assert (rest["title"] == rest["title_original"]).all()
    assert again.manifest["backend_calls"] == 0
