"""The real embedded SmolLM2-135M-Instruct through the local transformers backend."""
import pytest

from genrecsys.config import LLMConfig
from genrecsys.llm.client import LLM
from genrecsys.llm.parse import ParseError, parse_numbered_list
from genrecsys.llm.types import Request, SamplingParams

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_llm(ml100k_cache, tmp_path_factory):
    llm = LLM(LLMConfig(batch_size=4), cache_dir=ml100k_cache,
              cache_path=tmp_path_factory.mktemp("llm") / "cache.sqlite")
    yield llm
    llm.close()


PROMPTS = ["Name three famous science fiction movies as a numbered list.",
           "In one sentence, what is a recommender system?",
           "Name three comedy movies as a numbered list."]


def test_embedded_model_answers_a_batch_in_input_order(local_llm):
    params = SamplingParams(max_tokens=40)
    out = local_llm.generate([Request.chat(p, params=params) for p in PROMPTS])
    assert all(c.ok and c.text.strip() for c in out)
    assert local_llm.backend.model_id.startswith("SmolLM2-135M-Instruct.Q4_1.gguf@")
    for c, p in zip(out, PROMPTS):
        assert c.prompt_tokens == local_llm.backend.count_tokens(Request.chat(p).messages)
        assert 0 < c.completion_tokens <= 40
    # order: the same prompt alone gives the same greedy answer as inside the batch
    (alone,) = local_llm.generate([Request.chat(PROMPTS[1], params=SamplingParams(max_tokens=40, seed=1))])
    assert alone.text == out[1].text


def test_max_tokens_cut_is_reported_as_length(local_llm):
    (c,) = local_llm.generate([Request.chat(PROMPTS[0], params=SamplingParams(max_tokens=3))])
    assert c.finish_reason == "length" and c.completion_tokens == 3


def test_rerun_is_served_from_the_cache(local_llm):
    params = SamplingParams(max_tokens=40)
    local_llm.generate([Request.chat(p, params=params) for p in PROMPTS])
    assert local_llm.last_stats.total.cache_hits == 3 and local_llm.last_stats.total.backend_calls == 0


def test_small_model_output_goes_through_a_parser_with_reasks(local_llm):
    def parser(text):
        items = parse_numbered_list(text, min_items=2)
        if len(items) > 10:
            raise ParseError("too many items")
        return items

    (c,) = local_llm.generate([Request.chat(PROMPTS[2], params=SamplingParams(max_tokens=48))], parser=parser)
    assert c.text  # raw text is kept whether or not it parsed
    assert (c.ok and len(c.parsed) >= 2) or c.error.startswith("parse:")
