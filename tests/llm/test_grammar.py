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


@pytest.mark.parametrize("engine", ["xgrammar", "llguidance"])
def test_first_token_logprobs_under_a_choice_contract_cover_only_the_choices(tiny_model_dir, engine):
    """What llmrank reads: the masked distribution renormalised over the letters shown."""
    import math

    b = _backend(tiny_model_dir, engine)
    letters = [chr(65 + k) for k in range(6)]
    params = SamplingParams(max_tokens=1, logprobs=6)
    out = b.generate([Request.chat(p, params=params, contract=Contract("choice", letters))
                      for p in ("Pick one.", "Pick one of these six letters now, please.")])
    for c in out:
        assert c.ok and c.constrained and set(c.top_logprobs) <= set(letters)
        assert math.isclose(sum(math.exp(v) for v in c.top_logprobs.values()), 1.0, rel_tol=1e-4)
        assert c.text == max(c.top_logprobs, key=c.top_logprobs.get)  # greedy: the most likely letter


def test_a_named_dtype_changes_the_model_id_and_so_the_cache_keys(tiny_model_dir, monkeypatch):
    import warnings

    import torch

    from genrecsys import machine

    monkeypatch.setattr(machine, "bf16_kernels", lambda: False)  # an AVX2 CPU: bfloat16 is emulated, and said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = LocalBackend(LLMConfig(model=str(tiny_model_dir), threads=1, dtype="bfloat16"), tiny_model_dir)
    assert sum(str(w.message).startswith("llm.dtype bfloat16: this CPU has no bfloat16") for w in caught) == 1

    assert b.model_id.endswith("+bfloat16") and next(b.model.parameters()).dtype == torch.bfloat16
    assert "+" not in LocalBackend(LLMConfig(model=str(tiny_model_dir), threads=1), tiny_model_dir).model_id
    (c,) = b.generate([Request.chat("x", params=SamplingParams(max_tokens=1, logprobs=2),
                                    contract=Contract("choice", ["A", "B"]))])
    assert c.ok and c.text in ("A", "B") and set(c.top_logprobs) <= {"A", "B"}


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


def test_scored_choices_equal_the_full_sequence_log_likelihood(tiny_model_dir):
    """The prompt's KV cache is shared by chunks of right-padded choices; the figures must be
    those of running each prompt + choice alone."""
    import torch

    b = _backend(tiny_model_dir, "xgrammar")
    choices = ["Heat (1995)", "A", "Usual Suspects, The (1995)", "Babe", "Star Wars (1977)"]
    r = Request.chat("Pick a movie.", params=SamplingParams(max_tokens=1, score_choices=True),
                     contract=Contract("choice", choices))
    c = b._score_choices(r, chunk=2)
    assert c.ok and c.text == max(c.choice_logprobs, key=c.choice_logprobs.get)
    prompt = b.tokenizer(b._prompt(r.messages), add_special_tokens=False)["input_ids"]
    for x in choices:
        t = b.tokenizer(x, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            lp = torch.log_softmax(b.model(torch.tensor([prompt + t])).logits[0].float(), -1)
        alone = sum(float(lp[len(prompt) - 1 + k, t[k]]) for k in range(len(t)))
        assert abs(c.choice_logprobs[x] - alone) < 1e-3, x
    (bad,) = b.generate([Request.chat("x", params=SamplingParams(max_tokens=1, score_choices=True))])
    assert not bad.ok and "choice contract" in bad.error
