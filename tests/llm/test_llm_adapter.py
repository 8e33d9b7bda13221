"""The local LLM answers with a tallrec run's LoRA adapter (llm.adapter): the fine-tuned
weights are the ones that answer, the answers are cached apart from the base model's, and
a run that cannot serve text is a one-line error."""
from __future__ import annotations

import pytest
import torch

from genrecsys.config import DataConfig, ExperimentConfig, LLMConfig, TrainConfig
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import load_run, run_experiment
from genrecsys.llm.local import LocalBackend


@pytest.fixture(scope="module")
def tallrec_run(block_dataset_dir, tiny_causal_lm_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("adapter") / "tallrec"
    params = {"llm": str(tiny_causal_lm_dir), "examples": 16, "answers": ["item", "group"]}
    cfg = ExperimentConfig(model="tallrec", model_params=params, data=DataConfig(dataset=str(block_dataset_dir)),
                           train=TrainConfig(epochs=3, lr=0.05, batch_size=8, progress=False, seed=0))
    run_experiment(cfg, d)
    return d


def test_the_backend_answers_with_the_runs_fine_tuned_weights(tallrec_run, tiny_causal_lm_dir, tmp_path):
    base = LocalBackend(LLMConfig(model=str(tiny_causal_lm_dir)), tmp_path)
    tuned = LocalBackend(LLMConfig(model=str(tiny_causal_lm_dir), adapter=str(tallrec_run)), tmp_path)
    assert tuned.model_id.startswith(base.model_id + "+adapter@") and tuned.model_id != base.model_id
    _, _, model = load_run(tallrec_run)
    ids = torch.tensor([[5, 9, 17, 23, 40]])
    with torch.no_grad():
        want = model.decoder(input_ids=ids).last_hidden_state  # the tallrec run's own decoder
        got = tuned.model.get_decoder()(input_ids=ids).last_hidden_state
        untuned = base.model.get_decoder()(input_ids=ids).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, untuned, atol=1e-3)


def test_adapters_that_cannot_serve_text_are_refused(block_dataset_dir, tiny_causal_lm_dir, tallrec_run, tmp_path):
    with pytest.raises(GenrecsysError, match="not a finished run"):
        LocalBackend(LLMConfig(model=str(tiny_causal_lm_dir), adapter=str(tmp_path)), tmp_path)
    with pytest.raises(GenrecsysError, match="trained on llm="):
        LocalBackend(LLMConfig(adapter=str(tallrec_run)), tmp_path)  # another base (the embedded SmolLM2)
    bpr = tmp_path / "bpr"
    run_experiment(ExperimentConfig(model="bpr", data=DataConfig(dataset=str(block_dataset_dir)),
                                    train=TrainConfig(epochs=1, progress=False)), bpr)
    with pytest.raises(GenrecsysError, match="has no LLM adapter"):
        LocalBackend(LLMConfig(model=str(tiny_causal_lm_dir), adapter=str(bpr)), tmp_path)
