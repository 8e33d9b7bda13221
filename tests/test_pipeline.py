from __future__ import annotations

import pytest

from genrecsys.pipeline import MainJobConfig, run_main_job


@pytest.mark.integration
def test_quick_main_job_on_real_ml100k_writes_report_tables_and_plots(ml100k_cache_dir, tmp_path):
    cfg = MainJobConfig(quick=True, models=("pop", "bpr"), threads=1, progress=False, quick_epochs=3)
    report = run_main_job(cfg, tmp_path / "main", cache_dir=ml100k_cache_dir)
    text = report.read_text()
    assert "| ml-100k | 943 | 1,682 | 100,000 |" in text
    assert "| pop |" in text and "| bpr |" in text
    assert "Wilcoxon" in text
    for png in ("ndcg.png", "curves.png"):
        assert (tmp_path / "main" / png).stat().st_size > 1000
