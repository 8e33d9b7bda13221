from __future__ import annotations

import subprocess
import sys

import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.registry import MODELS


def test_unknown_name_lists_the_valid_choices():
    with pytest.raises(GenrecsysError, match="choose one of: .*sasrec"):
        MODELS.get("sasrek")


def test_listing_models_and_importing_data_eval_and_llm_does_not_import_torch():
    code = (
        "import sys; from genrecsys.registry import MODELS; MODELS.names();"
        "import genrecsys.data.splits, genrecsys.data.movielens, genrecsys.eval.metrics, genrecsys.eval.ranking, genrecsys.config;"
        "import genrecsys.llm.client, genrecsys.llm.job, genrecsys.llm.openai_compat, genrecsys.llm.parse, genrecsys.cli.llm;"
        "from genrecsys.llm.backends import BACKENDS; BACKENDS.names();"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
