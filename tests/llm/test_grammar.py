"""Constrained decoding in the local backend, with both grammar engines.

The model is a tiny randomly initialised Llama with SmolLM2's real tokenizer: its
answers are noise, so whatever is valid in them is the contract's doing. It runs the real
path (transformers generate, left padding, KV cache, our logits processor, the engine).
"""
import pytest

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.contracts import Contract
from genrecsys.llm.local import LocalBackend
from genrecsys.llm.types import Request, SamplingParams

pytestmark = pytest.mark.integration

CONTRACTS = [
    Contract("json", {"type": "object", "properties": {"topics": {"type": "array", "items": {"enum": ["Drama", "Sci-Fi"]},
                                                                  "minItems": 1, "maxItems": 3},
                                                       "region": {"enum": ["Ohio", "none"]}},
                      "required": ["topics", "region"], "additionalProperties": False}),
    Contract("regex", r"[a-c]{1,4}"),
    Contract("grammar", 'root ::= "Items:\\n1. " t "\\n2. " t\nt ::= ("Heat (1995)" | "Usual Suspects, The (1995)")'),
    Contract("choice", ["yes", "no way"]),
]


@pytest.fixture(scope="module")
def tiny_model_dir(ml100k_cache, tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from genrecsys.llm.local import resolve_model

    path, _ = resolve_model(None, ml100k_cache)  # the embedded SmolLM2, for its tokenizer
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _backend(model_dir, engine: str, batch_size: int = 8) -> LocalBackend:
    if engine == "llguidance":
        pytest.importorskip("llguidance")
    return LocalBackend(LLMConfig(model=str(model_dir), grammar_engine=engine, threads=1, batch_size=batch_size),
                        model_dir)


@pytest.mark.parametrize("engine", ["xgrammar", "llguidance"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_every_contracted_answer_is_valid_by_construction(tiny_model_dir, engine, temperature):
    b = _backend(tiny_model_dir, engine)
    params = SamplingParams(max_tokens=48, temperature=temperature, seed=3)
    # prompts of different lengths share batches (left padding); a free row rides along
    prompts = ["Answer.", "Please answer this longer question about movies now."]
    reqs = [Request.chat(p, params=params, contract=c) for c in CONTRACTS for p in prompts]
    reqs.append(Request.chat("free text", params=params))
    out = b.generate(reqs)
    for r, c in zip(reqs[:-1], out[:-1]):
        assert c.ok and c.constrained and c.finish_reason == "stop", (r.contract.kind, c.text)
        assert r.contract.check(c.text) is None, (r.contract.kind, c.text)
    assert out[-1].ok and not out[-1].constrained


def test_the_free_row_of_a_mixed_job_decodes_as_it_would_alone(tiny_model_dir):
    b = _backend(tiny_model_dir, "xgrammar")
    params = SamplingParams(max_tokens=12)
    free = Request.chat("free text", params=params)
    (alone,) = b.generate([free])
    mixed = b.generate([Request.chat("x", params=params, contract=CONTRACTS[1]), free])
    assert mixed[1].text == alone.text and mixed[0].constrained and not mixed[1].constrained


def test_a_contract_that_does_not_compile_stops_the_job_before_any_answer(tiny_model_dir, monkeypatch):
    b = _backend(tiny_model_dir, "xgrammar")
    calls = []
    monkeypatch.setattr(b.model, "generate", lambda *a, **kw: calls.append(1))
    bad = Request.chat("x", contract=Contract("grammar", "root ::= undefined_rule"))
    with pytest.raises(GenrecsysError, match="grammar contract does not compile with xgrammar") as err:
        b.generate([Request.chat("fine"), bad])
    assert calls == [] and "\n" not in str(err.value)


def test_generation_settings_are_ours_not_the_model_files(tiny_model_dir):
    import json

    req = Request.chat("same prompt", params=SamplingParams(max_tokens=10))
    (clean,) = _backend(tiny_model_dir, "xgrammar").generate([req])
    cfg_file = tiny_model_dir / "generation_config.json"
    saved = cfg_file.read_text()
    shipped = json.loads(saved)
    clean_ids = _backend(tiny_model_dir, "xgrammar").tokenizer(clean.text, add_special_tokens=False)["input_ids"]
    # a model file's defaults that would change the answer if they were read
    shipped.update(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=3.0, suppress_tokens=clean_ids)
    cfg_file.write_text(json.dumps(shipped))
    try:
        (shipped_answer,) = _backend(tiny_model_dir, "xgrammar").generate([req])
        assert shipped_answer.text == clean.text
    finally:
        cfg_file.write_text(saved)


def _cli(args):
    from genrecsys.cli.main import main

    return main(["llm", "generate", *map(str, args)])


def _raw_prompts(tmp_path, n=3):
    import json

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": f"Pick {i}"}]}) + "\n"
                            for i in range(n)))
    return path


def test_cli_schema_makes_every_output_row_valid_and_parsed(tiny_model_dir, tmp_path, capsys):
    import json

    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(CONTRACTS[0].spec))
    out = tmp_path / "out.jsonl"
    rc = _cli(["--input", _raw_prompts(tmp_path), "--output", out, "--schema", schema, "--backend", "local",
               "--model", tiny_model_dir, "--threads", "1", "--max-tokens", "48", "--temperature", "1.0",
               "--cache", tmp_path / "c.sqlite", "--no-progress"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rc == 0 and len(rows) == 3
    assert all(r["valid"] and r["error"] is None and set(r["parsed"]) == {"topics", "region"} for r in rows)
    assert "3 constrained, 0 invalid, 0 fallbacks" in capsys.readouterr().err


def test_cli_choices_file(tiny_model_dir, tmp_path):
    import json

    choices = tmp_path / "c.txt"
    choices.write_text("Heat (1995)\nToy Story (1995)\n")
    out = tmp_path / "out.jsonl"
    assert _cli(["--input", _raw_prompts(tmp_path), "--output", out, "--choices", choices, "--backend", "local",
                 "--model", tiny_model_dir, "--threads", "1", "--cache", tmp_path / "c.sqlite", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["valid"] and r["text"] in ("Heat (1995)", "Toy Story (1995)") for r in rows)


@pytest.mark.parametrize("schema,message", [
    ({"type": "string", "pattern": "(?<=a)b"}, "does not compile with xgrammar: Regex parsing error"),
    ({"type": "nonsense"}, "not a valid JSON Schema"),
])
def test_cli_schema_that_does_not_compile_fails_before_any_request_naming_the_file(tiny_model_dir, tmp_path, capsys,
                                                                                  monkeypatch, schema, message):
    import json

    calls = []
    monkeypatch.setattr(LocalBackend, "generate", lambda self, reqs, on_result=None: calls.append(reqs))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(schema))
    out = tmp_path / "out.jsonl"
    rc = _cli(["--input", _raw_prompts(tmp_path), "--output", out, "--schema", path, "--backend", "local",
               "--model", tiny_model_dir, "--threads", "1", "--cache", tmp_path / "c.sqlite", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and calls == [] and not out.exists()
    assert err.count("\n") == 0 and str(path) in err and message in err


def test_every_llm_task_of_the_toolkit_is_well_formed_under_its_contract_even_from_noise(tiny_model_dir, ml100k_cache_dir):
    from genrecsys.stages.structured import TASKS, markdown, measure, ratios, task_inputs

    rows = []
    for inp in task_inputs(TASKS, 3, ml100k_cache_dir):
        inp.max_tokens = 256  # a random model uses the whole length bounds; the budget must not cut it
        for contracts in (True, False):
            cfg = LLMConfig(model=str(tiny_model_dir), threads=1, batch_size=3)
            rows.append(measure(inp, cfg, contracts, ml100k_cache_dir))
    on = [r for r in rows if r["contract"]]
    assert [r["task"] for r in on] == list(TASKS)
    for r in on:  # the features' own parsers read every answer; nothing outside the closed lists
        assert (r["format_failures"], r["out_of_vocabulary"], r["out_of_catalog"], r["contract_violations"],
                r["reasks"], r["failed"]) == (0, 0, 0, 0, 0, 0), r
    off = [r for r in rows if not r["contract"]]
    assert sum(r["format_failures"] for r in off) > 0  # the same noise without contracts is unreadable
    assert {r["task"] for r in ratios(rows)} == set(TASKS)
    table = markdown(rows)
    assert table.count("\n| ") >= 2 * len(TASKS) and "| CoT | on | xgrammar |" in table
