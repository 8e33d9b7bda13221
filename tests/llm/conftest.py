import pytest

from genrecsys.config import LLMConfig
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.openai_compat import OpenAIBackend
from genrecsys.llm.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=4, base_s=0.01, max_backoff_s=0.05)


@pytest.fixture
def backend(server):
    b = OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, model="test-model", concurrency=4, timeout_s=5),
                      policy=FAST)
    yield b
    b.close()


@pytest.fixture
def cache(tmp_path):
    c = LLMCache(tmp_path / "cache.sqlite")
    yield c
    c.close()
