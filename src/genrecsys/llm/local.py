"""Local generation with Hugging Face transformers: real batching (left padding, KV cache).

The default model is the embedded SmolLM2-135M-Instruct GGUF. transformers de-quantizes a
GGUF on every load (~30 s for this model on 2 cores), so the first load writes the
converted weights to ``<cache>/llm/models/<file>-<sha>/`` and later loads take ~0.3 s.
"""
from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.machine import warn_emulated_bf16
from genrecsys.llm.backends import OnResult
from genrecsys.llm.types import Completion, Message, Request, SamplingParams


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in a sidecar keyed by size and mtime (GGUFs are large)."""
    st = path.stat()
    sidecar = path.parent / f".{path.name}.sha256"
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    try:
        saved_stamp, digest = sidecar.read_text().split()
        if saved_stamp == stamp:
            return digest
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        sidecar.write_text(f"{stamp} {digest}\n")
    except OSError:  # a read-only site-packages is fine: we just hash again next time
        pass
    return digest


def _dir_fingerprint(d: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        if (d / name).is_file():
            h.update((d / name).read_bytes())
    for f in sorted(d.glob("*.safetensors")) + sorted(d.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def resolve_model(model: str | None, cache_dir: Path) -> tuple[Path, str]:
    """(a directory transformers can load without ``gguf_file``, the model id for cache keys)."""
    from genrecsys.assets import embedded_llm_gguf

    src = Path(model) if model else embedded_llm_gguf(cache_dir)
    if not src.exists():
        raise GenrecsysError(f"local LLM not found: {src} (give a Hugging Face model directory or a .gguf file)")
    if src.is_dir():
        if not (src / "config.json").is_file():
            raise GenrecsysError(f"{src} is not a Hugging Face model directory (no config.json)")
        return src, f"{src.name}@{_dir_fingerprint(src)[:12]}"
    if src.suffix != ".gguf":
        raise GenrecsysError(f"{src}: expected a .gguf file or a model directory")
    digest = file_sha256(src)
    model_id = f"{src.name}@{digest[:12]}"
    converted = cache_dir / "llm" / "models" / f"{src.stem}-{digest[:12]}"
    if not (converted / "config.json").is_file():
        _convert_gguf(src, converted)
    return converted, model_id


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrecsys.assets import building_dir

    with building_dir(target) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are already de-quantized to float32; only the quantizer marker stops
        # save_pretrained, and the saved copy is a plain float32 checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def pinned_generation(params: SamplingParams, pad_id: int, eos_ids: list[int]) -> dict[str, Any]:
    """``generate`` settings fixed by us alone: every field a model's shipped
    ``generation_config.json`` could otherwise fill in (transformers fills only the fields
    left unset) is set, so a model file cannot turn on sampling, top-k or a repetition
    penalty behind the caller's back.

    Greedy decoding leaves the sampling-only fields out: transformers ignores them without
    sampling (and warns when they are set).

    >>> kw = pinned_generation(SamplingParams(max_tokens=8), pad_id=0, eos_ids=[2])
    >>> kw["do_sample"], kw["repetition_penalty"], kw["num_beams"], "top_k" in kw
    (False, 1.0, 1, False)
    >>> pinned_generation(SamplingParams(temperature=0.7), 0, [2])["top_k"]
    0
    """
    kw: dict[str, Any] = dict(max_new_tokens=params.max_tokens, do_sample=not params.greedy, num_beams=1,
                              repetition_penalty=1.0, no_repeat_ngram_size=0, length_penalty=1.0, min_new_tokens=0,
                              renormalize_logits=False, pad_token_id=pad_id, eos_token_id=eos_ids,
                              temperature=1.0, top_p=1.0)
    if not params.greedy:
        kw.update(temperature=params.temperature, top_p=params.top_p, top_k=0, min_p=0.0, typical_p=1.0,
                  epsilon_cutoff=0.0, eta_cutoff=0.0)
    return kw


class LocalBackend:
    """transformers on CPU or GPU; prompts with the same sampling params share batches.

    Prompts are sorted by length inside a group so batches carry little padding; results come
    back in input order. Each row's latency is its batch's wall time. A request's contract is
    enforced by the grammar engine ``llm.grammar_engine`` (:mod:`genrecsys.llm.grammar`);
    every distinct contract of a job is compiled before the first prompt runs, so a bad one
    fails the job before anything is generated.
    """

    name = "local"
    remote = False
    supports_contracts = True
    supports_scoring = True  # SamplingParams.score_choices

    def __init__(self, cfg: LLMConfig, cache_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # ours is the one progress bar a job shows
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        path, self.model_id = resolve_model(cfg.model, cache_dir)
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if cfg.dtype == "bfloat16":
            warn_emulated_bf16("llm.dtype bfloat16", self.device)
        if cfg.dtype == "auto":
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        else:  # named: other weights' numbers, other answers -> other cache keys
            dtype = getattr(torch, cfg.dtype)
            self.model_id += f"+{cfg.dtype}"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if cfg.adapter:  # the LLM fine-tuned on the catalog (tallrec / llmsid): other answers, other keys
            from genrecsys.llm.lora import apply_adapter

            self.model_id += "+adapter@" + apply_adapter(self.model, cfg.adapter, cfg.model)
        self.model = self.model.to(self.device).eval()
        shipped = self.model.generation_config
        # Generation settings are ours alone: a model's generation_config.json (sampling, top-k,
        # penalties, suppressed tokens) would otherwise fill every field a call leaves unset.
        from transformers import GenerationConfig

        self.model.generation_config = GenerationConfig(bos_token_id=shipped.bos_token_id,
                                                        eos_token_id=shipped.eos_token_id,
                                                        pad_token_id=shipped.pad_token_id)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_context = cfg.max_context or limit
        self._eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        gen_eos = shipped.eos_token_id
        self._eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        self._eos.discard(None)
        self._engine = None

    @property
    def engine(self):
        """The grammar engine, built on first use (importing it costs a second)."""
        if self._engine is None:
            from genrecsys.llm.grammar import make_engine

            self._engine = make_engine(self.cfg.grammar_engine, self.tokenizer, int(self.model.config.vocab_size),
                                       sorted(self._eos))
        return self._engine

    def _prompt(self, messages: Sequence[Message]) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.tokenizer(self._prompt(messages), add_special_tokens=False)["input_ids"])

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        for r in requests:  # compile every contract first: a bad one stops the job before any answer
            if r.contract is not None:
                self.engine.compile(r.contract)
        groups: dict[tuple[SamplingParams, bool], list[int]] = {}
        for i, r in enumerate(requests):
            if r.params.score_choices:  # scored, not generated: one prompt at a time, its choices batched
                out[i] = self._score_choices(r)
                if on_result is not None:
                    on_result(i, out[i])
                continue
            groups.setdefault((r.params, r.contract is not None), []).append(i)
        for (params, _), idx in groups.items():
            prompts = {i: self._prompt(requests[i].messages) for i in idx}
            idx = sorted(idx, key=lambda i: len(prompts[i]))
            for b in range(0, len(idx), self.cfg.batch_size):
                batch = idx[b:b + self.cfg.batch_size]
                try:
                    results = self._generate_batch([prompts[i] for i in batch], params,
                                                   [requests[i].contract for i in batch])
                except Exception as exc:  # e.g. out of memory: fail these rows, keep the job going
                    results = [Completion.failed(f"{type(exc).__name__}: {exc}", self.name, self.model_id)] * len(batch)
                for i, comp in zip(batch, results):
                    out[i] = comp
                    if on_result is not None:
                        on_result(i, comp)
        return out  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[str], params: SamplingParams,
                        contracts: Sequence[Any] | None = None) -> list[Completion]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs = pinned_generation(params, self.tokenizer.pad_token_id, sorted(self._eos))
        if not params.greedy:
            torch.manual_seed(params.seed)
        processor = None
        if contracts and any(c is not None for c in contracts):
            from genrecsys.llm.grammar import ContractProcessor

            eng = self.engine
            processor = ContractProcessor([None if c is None else eng.matcher(eng.compile(c)) for c in contracts],
                                          eng.vocab_size, sorted(self._eos))
            kwargs["logits_processor"] = [processor]
        if params.logprobs:
            kwargs.update(output_scores=True, return_dict_in_generate=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            res = self.model.generate(**enc, **kwargs)
        latency = time.perf_counter() - t0
        seqs = res.sequences if params.logprobs else res
        tops = self._top_logprobs(res.scores[0], params.logprobs) if params.logprobs else [None] * len(prompts)
        new = seqs[:, enc["input_ids"].shape[1]:].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        for b, (row, n_prompt) in enumerate(zip(new, prompt_lens)):
            stop_at = next((j for j, t in enumerate(row) if t in self._eos), None)
            tokens = row if stop_at is None else row[:stop_at]
            n_completion = len(row) if stop_at is None else stop_at + 1
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            finish = "stop" if stop_at is not None else ("length" if len(row) >= params.max_tokens else "stop")
            text, hit = _apply_stop(text, params.stop)
            if hit:
                finish = "stop"
            results.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(n_prompt),
                                      completion_tokens=int(n_completion), latency_s=latency,
                                      backend=self.name, model=self.model_id,
                                      constrained=processor is not None and contracts[b] is not None
                                      and not processor.rejected[b], top_logprobs=tops[b]))
        return results

    def _score_choices(self, r: Request, chunk: int = 64) -> Completion:
        """log P(choice | prompt) for every choice of ``r``'s choice contract, without decoding.

        The prompt runs once; its KV cache is copied to each chunk of choices, which are fed
        after it (right-padded), so a prompt with 20 choices costs the prompt plus the
        choices' own tokens. The answer text is the most likely choice."""
        import copy

        import torch

        c = r.contract
        if c is None or c.kind != "choice":
            return Completion.failed("score_choices needs a choice contract", self.name, self.model_id)
        t0 = time.perf_counter()
        ids = self.tokenizer(self._prompt(r.messages), return_tensors="pt", add_special_tokens=False)["input_ids"]
        ids = ids.to(self.device)
        n_prompt = ids.shape[1]
        scores: dict[str, float] = {}
        n_tokens = 0
        with torch.inference_mode():
            # only the last position's logits: the LM head over every prompt token would cost
            # more than the rest of the forward pass
            keep = {"logits_to_keep": 1} if "logits_to_keep" in self._forward_args else {}
            out = self.model(ids, use_cache=True, **keep)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # (V,) the answer's first token
            prefix_cache = getattr(out, "cache", None) or out.past_key_values
            choices = list(c.spec)
            for start in range(0, len(choices), chunk):
                part = choices[start:start + chunk]
                toks = [self.tokenizer(x, add_special_tokens=False)["input_ids"] or [self.tokenizer.eos_token_id]
                        for x in part]
                width = max(map(len, toks))
                x = torch.full((len(part), width), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
                real = torch.zeros((len(part), width), dtype=torch.bool, device=self.device)
                for b, t in enumerate(toks):
                    x[b, :len(t)] = torch.as_tensor(t)
                    real[b, :len(t)] = True
                total = first[x[:, 0]]  # (B,)
                if width > 1:
                    cache = copy.deepcopy(prefix_cache)
                    cache.batch_repeat_interleave(len(part))
                    mask = torch.cat([torch.ones((len(part), n_prompt), dtype=torch.long, device=self.device),
                                      real[:, :-1].long()], dim=1)
                    logits = self.model(x[:, :-1], attention_mask=mask, **{self._cache_arg: cache}).logits.float()
                    lp = torch.log_softmax(logits, dim=-1).gather(2, x[:, 1:, None])[..., 0]  # (B, T-1)
                    total = total + (lp * real[:, 1:]).sum(dim=1)
                scores.update(zip(part, total.tolist()))
                n_tokens += int(real.sum())
        best = max(scores, key=scores.get)
        return Completion(text=best, finish_reason="stop", prompt_tokens=n_prompt + n_tokens, completion_tokens=0,
                          latency_s=time.perf_counter() - t0, backend=self.name, model=self.model_id,
                          constrained=True, choice_logprobs=scores)

    @functools.cached_property
    def _forward_args(self) -> frozenset[str]:
        """The model's forward() keywords, read once (they differ across transformers versions)."""
        import inspect

        return frozenset(inspect.signature(self.model.forward).parameters)

    @property
    def _cache_arg(self) -> str:
        """The forward() keyword of a KV cache: ``cache`` in transformers 5.x, ``past_key_values`` before."""
        return "cache" if "cache" in self._forward_args else "past_key_values"

    def _top_logprobs(self, scores, n: int) -> list[dict[str, float]]:
        """(B, V) first-step scores, after the logits processors (the contract's mask) -> per
        row the ``n`` most likely tokens' text -> log-probability (masked tokens left out)."""
        import torch

        logp = torch.log_softmax(scores.float(), dim=-1)
        values, ids = logp.topk(min(n, logp.shape[-1]), dim=-1)
        out = []
        for vs, ts in zip(values.tolist(), ids.tolist()):
            row: dict[str, float] = {}
            for v, t in zip(vs, ts):
                text = self.tokenizer.decode([t])
                if v > -float("inf") and text not in row:
                    row[text] = v
            out.append(row)
        return out


def _apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut at the first stop string, as servers do (the stop string is not returned).

    >>> _apply_stop("a END b", ("END",))
    ('a ', True)
    """
    cut = min((p for p in (text.find(s) for s in stop if s) if p >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
