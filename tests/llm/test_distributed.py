"""The Ray executor is the local job on Ray Data actors: same answers, same order, same
cache, same accounting. One local Ray serves the whole module (it takes seconds to start)."""
import sys

import numpy as np
import pytest
from pydantic import BaseModel

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.client import LLM, EchoBackend
from genrecsys.llm.job import generate
from genrecsys.llm.parse import parse_json
from genrecsys.llm.types import Completion, Request
from openai_server import answer_for

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "genrecsys[ray]" (it is in the test extra)')
pytest.importorskip("ray.data", reason='Ray Data is missing: pip install "ray[data]"')

from genrecsys.llm.distributed import embed_on_ray, generate_on_ray  # noqa: E402


class Item(BaseModel):
    title: str
    abstract: str
    category: str


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from ray import cloudpickle

    # Parsers and parsed models defined in this test module must reach the actors, which
    # cannot import it: ship them by value, as a user's __main__ script would be.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if not ray.is_initialized():
        try:
            ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - e.g. a sandbox that forbids Ray's sockets
            pytest.skip(f"a local Ray could not start here: {exc}")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _cfg(server, **kw):
    return LLMConfig(backend="openai", base_url=server.url, model="test-model", concurrency=4, timeout_s=5, **kw)


def _rows(comps):
    """What a caller sees of each completion (latency varies from run to run)."""
    return [(c.text, c.ok, c.error, c.cached, c.finish_reason, c.parsed, c.prompt_tokens, c.completion_tokens)
            for c in comps]


def _counts(stats):
    """Everything but the timings (wall times and the decode-time split, which differ run to run)."""
    def counts(d):
        return {k: v for k, v in d.items() if not (k.endswith("_s") or k.endswith("_per_s"))}

    d = counts(stats.to_dict())
    d["tasks"] = {k: counts(v) for k, v in d["tasks"].items()}
    return d


def _parse_item(text):
    return parse_json(text, Item)


def test_ray_answers_equal_local_answers_in_input_order_with_the_same_accounting(server, tmp_path):
    reqs = ([Request.chat(f"prompt {i}", task="a" if i % 2 else "b") for i in range(10)]
            + [Request.chat("prompt 3"),  # the same prompt twice in one job: paid once, as locally
               Request.chat("bad MODE=400"),  # a failed row stays a recorded error
               Request.chat("p MODE=wrongonce"), Request.chat("q MODE=prose"),  # a re-ask; a lenient parse
               Completion.failed("could not render")])  # failed upstream: passed through and counted
    parser = (lambda text: text if text.startswith("answer-") else _parse_item(text))  # noqa: E731 - shipped by value

    local_backend = make_openai(server)
    local, local_stats = generate(reqs, local_backend, LLMCache(tmp_path / "local.sqlite"), parser=parser)
    local_backend.close()
    local_attempts = dict(server.attempts)
    server.attempts.clear()

    out, stats = generate_on_ray(reqs, _cfg(server), tmp_path / "ray.sqlite", parser, num_workers=2, batch_size=3)

    assert _rows(out) == _rows(local)
    assert out[0].text == answer_for("prompt 0") and out[10].cached and not out[11].ok and "HTTP 400" in out[11].error
    assert isinstance(out[13].parsed, Item) and out[14].error == "could not render"
    assert _counts(stats) == _counts(local_stats)
    assert stats.total.requests == 15 == stats.total.ok + stats.total.failed and stats.total.reasks == 1
    assert dict(server.attempts) == local_attempts  # every prompt sent exactly as often as locally
    assert stats.wall_s > 0


def test_rerun_on_ray_makes_no_backend_call_and_the_cache_is_shared_with_local_runs(server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    reqs = [Request.chat(f"prompt {i}") for i in range(8)] + [Request.chat("bad MODE=400")]
    first, s1 = generate_on_ray(reqs, _cfg(server), cache, num_workers=2, batch_size=2)
    assert s1.total.backend_calls == 8 and s1.total.cache_hits == 0 and s1.total.failed == 1
    sent = sum(server.attempts.values())

    again, s2 = generate_on_ray(reqs, _cfg(server), cache, num_workers=2, batch_size=2)
    assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again[:8])
    # only the failed row is sent again (errors are never cached); it fails again, unpaid
    assert s2.total.backend_calls == 0 and s2.total.cache_hits == 8 and s2.total.failed == 1
    assert sum(server.attempts.values()) == sent + 1 and server.attempts["bad MODE=400"] == 2

    local_backend = make_openai(server)
    local, s3 = generate(reqs[:8], local_backend, LLMCache(cache))  # what the actors committed, a local run reads
    local_backend.close()
    assert s3.total.backend_calls == 0 and [c.text for c in local] == [c.text for c in first[:8]]


def test_llm_facade_with_executor_ray_is_transparent_to_callers(server, tmp_path):
    rows = [{"user": f"u{i}"} for i in range(5)]
    from genrecsys.llm.templates import PromptTemplate

    t = PromptTemplate(name="hello", version="1", user="hello {{ user }}", variables=("user",))
    local = LLM(_cfg(server), tmp_path, cache_path=tmp_path / "a.sqlite")
    on_ray = LLM(_cfg(server, executor="ray", ray_workers=2, ray_batch_size=2), tmp_path,
                 cache_path=tmp_path / "b.sqlite")
    try:
        want = local.run_template(t, rows, task="greet")
        got = on_ray.run_template(t, rows, task="greet")
        assert _rows(got) == _rows(want)
        assert _counts(on_ray.stats) == _counts(local.stats)
        assert on_ray.stats.tasks["greet"].backend_calls == 5
        on_ray.run_template(t, rows, task="greet")
        assert on_ray.last_stats.total.backend_calls == 0 and on_ray.stats.total.cache_hits == 5
    finally:
        local.close()
        on_ray.close()


def test_a_backend_instance_handed_to_the_facade_is_shipped_to_the_actors(tmp_path):
    reqs = [Request.chat(w) for w in ("a", "b", "a", "c")]
    llm = LLM(LLMConfig(executor="ray"), tmp_path, backend=EchoBackend(), cache_path=tmp_path / "c.sqlite")
    out = llm.generate(reqs)
    assert [c.text for c in out] == ["echo: a", "echo: b", "echo: a", "echo: c"]
    assert llm.stats.total.backend_calls == 3 and llm.stats.total.cache_hits == 1
    assert EchoBackend().model_id == llm.stats.model == "echo-1"


def test_augment_on_ray_writes_the_same_variant_as_a_local_run(block_dataset_dir, tmp_path):
    from genrecsys.augment.run import augment

    variants = {}
    for executor in ("local", "ray"):  # GENRE's summarizer, parser lambda and all, gets Ray from the facade
        llm = LLM(LLMConfig(executor=executor), tmp_path, backend=EchoBackend(), cache_path=tmp_path / f"{executor}.sqlite")
        variants[executor] = augment("summarize", block_dataset_dir, tmp_path / executor, llm, cache_dir=tmp_path)
        llm.close()
    files = sorted(f.relative_to(variants["local"]) for f in variants["local"].rglob("*") if f.is_file())
    assert "items.parquet" in map(str, files)
    for f in files:
        if f.name != "manifest.json":  # it records timings
            assert (variants["ray"] / f).read_bytes() == (variants["local"] / f).read_bytes(), f


def test_ray_config_is_validated():
    with pytest.raises(GenrecsysError, match="executor"):
        LLMConfig(executor="dask")
    with pytest.raises(GenrecsysError, match="ray_workers"):
        LLMConfig(executor="ray", ray_workers=0)


def test_cli_ray_flags_reach_the_llm_config():
    import argparse

    from genrecsys.cli.llm import add_llm_parser, llm_config

    top = argparse.ArgumentParser()
    add_llm_parser(top.add_subparsers(dest="command"), lambda a: None)
    base = ["llm", "generate", "--input", "x", "--output", "y"]
    cfg = llm_config(top.parse_args(base + ["--ray", "--ray-workers", "3", "--ray-batch-size", "16"]))
    assert (cfg.executor, cfg.ray_workers, cfg.ray_batch_size, cfg.ray_address) == ("ray", 3, 16, None)
    assert llm_config(top.parse_args(base)).executor == "local"
    with pytest.raises(GenrecsysError, match="--ray-workers need"):
        llm_config(top.parse_args(base + ["--ray-workers", "3"]))


def test_embeddings_on_ray_match_local_encoding_in_input_order(minilm, tmp_path, monkeypatch):
    from genrecsys.llm import distributed
    from genrecsys.reasoning.fusion import encode_texts

    model_dir = minilm
    texts = [f"Movie {i}. Genres: {g}" for i, g in enumerate(["Comedy", "Action, Crime", "Drama"] * 3)]
    local = encode_texts(texts, model_dir, batch_size=4, cache_dir=tmp_path / "local")
    remote = embed_on_ray(texts, model_dir, num_workers=2, batch_size=4, encode_batch_size=4)  # 3 batches, 2 actors
    assert remote.shape == local.shape == (9, 384) and remote.dtype == np.float32
    assert np.allclose(remote, local, atol=1e-5)

    calls = []
    monkeypatch.setattr(distributed, "embed_on_ray", lambda t, m, **kw: calls.append(kw) or remote)
    via_switch = encode_texts(texts, model_dir, batch_size=4, cache_dir=tmp_path / "ray", executor="ray", ray_workers=3)
    assert calls == [dict(num_workers=3, encode_batch_size=4, address=None)] and np.array_equal(via_switch, remote)


def make_openai(server):
    from genrecsys.llm.openai_compat import OpenAIBackend

    return OpenAIBackend(_cfg(server))
