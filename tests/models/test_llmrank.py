"""llmrank: the LLM ranks a retriever run's candidates (genrecsys.models.llmrank).

The LLM here is scripted: it reads the prompt as a model would and answers with
first-token log-probabilities, so the tests can tell the letters, the shuffles and the
score layout apart. The real SmolLM2 path is in test_llmrank_smollm2 (integration)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, LLMConfig, TrainConfig
from genrecsys.errors import GenrecsysError
from genrecsys.eval.ranking import pad_left
from genrecsys.experiment import build_model, load_split, run_experiment
from genrecsys.llm.client import LLM
from genrecsys.llm.types import Completion
from genrecsys.models.llmrank import Ranked, letter_probs, position_bias
from genrecsys.train.loop import evaluate

FULL = EvalConfig(ks=(1, 5, 10), protocol="full")


class CycleLLM:
    """Knows block_cycles: the next item follows the most recent one in its group's cycle.
    Puts most of the probability on that candidate's letter; ``mode`` breaks it on purpose."""

    name, model_id, remote, max_context, supports_contracts, supports_scoring = "scripted", "cycle-1", False, None, True, True

    def __init__(self, mode: str = "know"):
        self.mode = mode
        self.prompts = 0
        self.content_free = 0

    def _scores(self, r):
        """score_choices: the next item's title likely; under the content-free prompt a
        "famous" title (Item 3 of each group) is likely for anyone — PMI must discount it."""
        text = r.messages[-1]["content"]
        prior = {t: (-1.0 if re.match(r"Item 3 ", t) else -8.0) for t in r.contract.spec}
        if "1. N/A" in text:
            self.content_free += 1
            return prior
        last = int(re.search(r"1\. Item (\d+) \(group (\d+)\)", text).group(1))
        nxt = (last - 1) // 10 * 10 + ((last - 1) % 10 + 1) % 10 + 1
        return {t: v + (6.0 if t.startswith(f"Item {nxt} ") else 0.0) for t, v in prior.items()}

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, requests, on_result=None):
        out = []
        for i, r in enumerate(requests):
            self.prompts += 1
            if r.params.score_choices:
                scores = self._scores(r)
                c = Completion(text=max(scores, key=scores.get), backend=self.name, model=self.model_id,
                               choice_logprobs=scores)
                out.append(c)
                if on_result:
                    on_result(i, c)
                continue
            text = r.messages[-1]["content"]
            last = int(re.search(r"1\. Item (\d+) \(group (\d+)\)", text).group(1))
            nxt = (last - 1) // 10 * 10 + ((last - 1) % 10 + 1) % 10 + 1  # 10 items per group, 1-based
            letters = dict((int(n), x) for x, n in re.findall(r"\n([A-T])\. Item (\d+) ", text))
            tops = {x: (-0.05 if n == nxt else -5.0) for n, x in letters.items()}
            if self.mode == "none":
                tops = None
            elif self.mode == "prose":  # an unconstrained model that starts talking
                tops = {"The": -0.01, **{x: -6.0 for x in tops}}
            c = Completion(text="A", backend=self.name, model=self.model_id, prompt_tokens=1, completion_tokens=1,
                           top_logprobs=tops)
            out.append(c)
            if on_result:
                on_result(i, c)
        return out


@pytest.fixture(scope="module")
def pop_run(block_dataset_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("retriever") / "pop"
    cfg = ExperimentConfig(model="pop", data=DataConfig(dataset=str(block_dataset_dir), max_seq_len=8),
                           train=TrainConfig(progress=False, seed=0))
    run_experiment(cfg, d)
    return d


@pytest.fixture(scope="module")
def split(block_dataset_dir):
    return load_split(ExperimentConfig(data=DataConfig(dataset=str(block_dataset_dir))))


def _model(split, retriever, tmp_path, mode="know", **params):
    m = build_model("llmrank", {"retriever": str(retriever), **params}, split)
    backend = CycleLLM(mode)
    m._runtime["llm"] = LLM(LLMConfig(), backend=backend, cache_path=tmp_path / f"cache-{mode}.sqlite")
    return m, backend


def test_a_knowing_llm_puts_the_next_item_first_whatever_the_shown_order(split, pop_run, tmp_path):
    m, backend = _model(split, pop_run, tmp_path)
    res = evaluate(m, split, "test", FULL, max_len=8)
    assert res.metrics["hit@1"] == 1.0  # the retriever (popularity) alone is far from it
    assert evaluate(m._runtime["retriever"], split, "test", FULL, max_len=8).metrics["hit@1"] < 0.3
    assert m.counts["violations"] == 0 and m.counts["failed"] == 0
    assert m.counts["prompts"] == 3 * len(split.eval_users("test"))  # 3 shuffles per user
    asked = backend.prompts  # fewer: users with one history share their prompts
    evaluate(m, split, "test", FULL, max_len=8)  # again: every answer from the cache
    assert backend.prompts == asked


def test_candidates_rank_above_everything_else_and_the_rest_keeps_the_retrievers_order(split, pop_run, tmp_path):
    m, _ = _model(split, pop_run, tmp_path, candidates=4)
    who = split.eval_users("test")[:5]
    seqs = torch.as_tensor(pad_left(split.history("test"), who, 8))
    users = torch.as_tensor(who)
    scores = m.score(users, seqs)
    r = m._runtime["retriever"].score(users, seqs)
    for b in range(len(who)):
        seen = set(split.history("test").of(int(who[b])))
        order = [int(i) for i in scores[b].argsort(descending=True) if int(i) and int(i) not in seen]
        retriever_order = [int(i) for i in r[b].argsort(descending=True, stable=True) if int(i) and int(i) not in seen]
        cands = retriever_order[:4]
        assert set(order[:4]) == set(cands)
        assert order[4:] == retriever_order[4:]


@pytest.mark.parametrize("mode,counter", [("none", "failed"), ("prose", "violations")])
def test_an_llm_without_a_usable_answer_is_counted(split, pop_run, tmp_path, mode, counter):
    m, _ = _model(split, pop_run, tmp_path, mode=mode)
    who = split.eval_users("test")[:6]
    seqs = torch.as_tensor(pad_left(split.history("test"), who, 8))
    scores = m.score(torch.as_tensor(who), seqs)
    assert m.counts[counter] == 3 * 6
    if mode == "none":  # no answer at all: the retriever's order, untouched
        r = m._runtime["retriever"].score(torch.as_tensor(who), seqs).clone()
        r[:, 0] = -torch.inf
        assert torch.equal(scores.argsort(dim=1, descending=True), r.argsort(dim=1, descending=True, stable=True))


def test_a_user_sample_leaves_the_others_to_the_retriever(split, pop_run, tmp_path):
    m, backend = _model(split, pop_run, tmp_path, users=5)
    assert len(m.sample) == 5
    evaluate(m, split, "test", FULL, max_len=8)
    assert m.counts["prompts"] == 3 * 5 and m.counts["users_ranked"] == 5


def test_position_bias_by_hand():
    # user 1: three orders agree on candidate 0; user 2: the answer is always position A
    a = Ranked([1, 2, 3], [[0, 1, 2], [2, 0, 1], [1, 2, 0]],
               [np.array([.8, .1, .1]), np.array([.7, .2, .1]), np.array([.6, .3, .1])])
    b = Ranked([4, 5, 6], [[0, 1, 2], [1, 2, 0], [2, 0, 1]],
               [np.array([.9, .05, .05]), np.array([.05, .9, .05]), np.array([.05, .05, .9])])
    out = position_bias({0: a, 1: b})
    assert out["users"] == 2 and out["top1_agreement"] == 0.5
    # a: top at A in the 1st order only (candidate 0 shown 2nd, 3rd after); b: at A every time
    assert out["first_position_share"] == pytest.approx(4 / 6)
    assert out["uniform_share"] == pytest.approx(1 / 3)


def test_letter_probs_ignore_tokens_outside_the_letters():
    p, v = letter_probs({"C": np.log(0.5), "A": np.log(0.25), "Z": np.log(0.25)}, ["A", "B", "C"])
    assert p.tolist() == pytest.approx([1 / 3, 0, 2 / 3]) and v == 0
    assert letter_probs(None, ["A"]) == (None, 0)


def test_bad_settings_are_one_line_errors(split, pop_run, tmp_path):
    with pytest.raises(GenrecsysError, match="retriever=RUN_DIR"):
        build_model("llmrank", {}, split)
    with pytest.raises(GenrecsysError, match=r"candidates must be in \[2, 20\]"):
        build_model("llmrank", {"retriever": str(pop_run), "candidates": 30}, split)
    with pytest.raises(GenrecsysError, match="not a run directory"):
        build_model("llmrank", {"retriever": str(tmp_path)}, split)


def test_a_retriever_trained_on_other_data_is_refused(pop_run):
    from genrecsys.data.splits import leave_one_out
    from genrecsys.data.synthetic import block_cycles

    other = leave_one_out(block_cycles(n_users=30))
    with pytest.raises(GenrecsysError, match="trained on other data"):
        build_model("llmrank", {"retriever": str(pop_run)}, other)


def test_cli_trains_llmrank_against_the_loopback_server_with_nested_llm_params(pop_run, block_dataset_dir, tmp_path,
                                                                                  server):
    from genrecsys.cli.main import main

    out = tmp_path / "run"
    main(["train", "--model", "llmrank", "--dataset", str(block_dataset_dir), "--no-progress", "--output-dir", str(out),
          "--param", f"retriever={pop_run}", "--param", "llm.backend=openai", "--param", f"llm.base_url={server.url}",
          "--param", f"llm.cache={tmp_path / 'cache.sqlite'}", "--param", "candidates=5"])
    assert (out / "metrics.json").is_file()
    bodies = [b for b in server.bodies if b.get("logprobs")]
    assert bodies and all(b["top_logprobs"] == 5 and b["max_tokens"] == 1 for b in bodies)


@pytest.mark.parametrize("readout,hit1", [("pmi", 1.0), ("likelihood", None)])
def test_pointwise_readouts_score_every_candidate_title(split, pop_run, tmp_path, readout, hit1):
    m, backend = _model(split, pop_run, tmp_path, readout=readout)
    res = evaluate(m, split, "test", FULL, max_len=8)
    n = len(split.eval_users("test"))
    assert m.counts["prompts"] == n and m.counts["failed"] == 0 and m.counts["violations"] == 0
    if readout == "pmi":  # the famous title is discounted: the next item wins everywhere
        assert res.metrics["hit@1"] == hit1 and backend.content_free == 1
        evaluate(m, split, "valid", FULL, max_len=8)
        assert backend.content_free == 1  # one content-free prompt per run, whatever is scored
    else:  # raw likelihood: the famous title (-1.0) beats the next one (-8 + 6) where it is a candidate
        assert res.metrics["hit@1"] < 1.0 and backend.content_free == 0
    ranked = m.rank(torch.as_tensor(split.eval_users("test")[:3]),
                    torch.as_tensor(pad_left(split.history("test"), split.eval_users("test")[:3], 8)))
    assert position_bias(ranked) == {"users": 0}  # one order-free answer per user: nothing to compare


def test_pointwise_readouts_need_a_backend_that_scores(split, pop_run, tmp_path, server):
    m = build_model("llmrank", {"retriever": str(pop_run), "readout": "pmi",
                                "llm": {"backend": "openai", "base_url": server.url,
                                        "cache": str(tmp_path / "c.sqlite")}}, split)
    who = split.eval_users("test")[:2]
    with pytest.raises(GenrecsysError, match="needs the local backend; llm.backend is openai"):
        m.score(torch.as_tensor(who), torch.as_tensor(pad_left(split.history("test"), who, 8)))
    assert server.bodies == []  # refused before any request
