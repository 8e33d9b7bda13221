"""LoRA on a causal LM: which of the decoder's weights learn (adapters injected through
``peft``, every weight, or none) and a finished tallrec / llmsid run's adapter applied to
an LM for text generation (``llm.adapter``: the GENRE / RELAND templates served by a
model that has seen the catalog).

The model registry is looked up by name only, so the LLM backends use this without
importing the recommender models.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genrecsys.errors import GenrecsysError

LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def prepare_finetune(decoder: nn.Module, mode: str, r: int = 8, alpha: int = 16, dropout: float = 0.0,
                     targets: tuple[str, ...] = LLAMA_LINEAR) -> nn.Module:
    """Set which of the decoder's weights learn: LoRA adapters injected in place (``peft``),
    every weight ("full"), or none ("frozen")."""
    for p in decoder.parameters():
        p.requires_grad_(mode == "full")
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        present = {name.rsplit(".", 1)[-1] for name, _ in decoder.named_modules()}
        chosen = [t for t in targets if t in present]
        if not chosen:
            raise GenrecsysError(f"llmsid: none of the LoRA targets {list(targets)} is a module of this LM")
        decoder = inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                     target_modules=chosen), decoder)
        for name, p in decoder.named_parameters():
            p.requires_grad_("lora_" in name)
    return decoder


def apply_adapter(lm: nn.Module, run_dir: str | Path, base: str | None) -> str:
    """Apply a finished tallrec/llmsid run's LoRA adapter to ``lm`` (a causal LM loaded from
    ``base``) in place, for text generation; returns a fingerprint of the adapter for cache
    keys. The run must have been trained with LoRA on all the blocks of the same base."""
    import hashlib

    from genrecsys.config import load_experiment

    run = Path(run_dir)
    if not (run / "model.pt").is_file() or not (run / "config.yaml").is_file():
        raise GenrecsysError(f"llm.adapter {run_dir}: not a finished run directory (model.pt, config.yaml)")
    cfg = load_experiment(run / "config.yaml")
    if cfg.model not in ("tallrec", "llmsid"):
        raise GenrecsysError(f"llm.adapter {run_dir}: a {cfg.model} run has no LLM adapter (tallrec or llmsid)")
    from genrecsys.config import from_dict
    from genrecsys.registry import MODELS

    params = from_dict(MODELS.get(cfg.model).Config, dict(cfg.model_params), f"{run}: model_params")
    if params.finetune != "lora" or params.layers is not None:
        raise GenrecsysError(f"llm.adapter {run_dir}: needs a LoRA run over all blocks (finetune=lora, layers unset), "
                             f"got finetune={params.finetune}, layers={params.layers}")
    if (params.llm or None) != (base or None):
        raise GenrecsysError(f"llm.adapter {run_dir}: trained on llm={params.llm or 'the embedded SmolLM2'}, "
                             f"but llm.model is {base or 'the embedded SmolLM2'}")
    saved = torch.load(run / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    lora = {k[len("decoder."):]: v for k, v in saved.items() if k.startswith("decoder.") and "lora_" in k}
    decoder = prepare_finetune(lm.get_decoder(), "lora", params.lora_r, params.lora_alpha, 0.0, params.lora_targets)
    missing = set(lora) - set(decoder.state_dict())
    if missing or not lora:
        raise GenrecsysError(f"llm.adapter {run_dir}: its weights do not fit this LM ({sorted(missing)[:2]})")
    decoder.load_state_dict(lora, strict=False)
    for p in lm.parameters():
        p.requires_grad_(False)
    return hashlib.sha256((run / "model.pt").read_bytes()).hexdigest()[:12]
