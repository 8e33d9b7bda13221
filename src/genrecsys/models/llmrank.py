"""The LLM as the recommender (the Gen-RecSys survey's "LLM as ranker", LLMRank-style): a
retriever run proposes each user's top ``candidates`` unseen items and the LLM ranks them
from the titles of the user's recent items.

Formulation, chosen for cost: the candidates are listed under letters (A., B., ...) and the
LLM is asked for the letter of the item the user will choose next (template ``llm_rank``).
The ranking is read from the probability of every letter at the answer's first token
(``SamplingParams.logprobs``), so one forward pass ranks all candidates with no decoding
— on 2 CPU cores about 0.3 s per prompt for SmolLM2-135M in bfloat16, where generating
a ranked list of titles cost ~2 s. The answer is held to the letters shown by a choice
contract, so no probability mass can fall on an item outside the list; where a backend
cannot enforce it, tokens outside the letters are dropped and the rows whose most likely
token was not a letter are counted as ``violations``.

Position bias: each user's candidates are shown in ``shuffles`` orders (seeded by the
candidate set, so one history always gets the same prompts and cached answers); an item's
LLM score is its mean probability over the orders. :func:`position_bias` measures how far
the orders agree. Items outside the candidates keep the retriever's order, after them.

``users`` ranks a fixed random sample of users with the LLM and leaves the others in the
retriever's order (the CPU benchmark's setting; the paired test against the retriever is
then read on the sampled users). Answers go through the LLM cache: a rerun or a second
evaluation of the same users pays nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genrecsys.config import LLMConfig
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender

MAX_CANDIDATES = 20  # letters A-T; also OpenAI's top_logprobs limit
READOUTS = ("letters", "likelihood", "pmi")


@dataclass
class LLMRankConfig:
    retriever: str = ""  # a finished run directory (genrecsys train) whose model proposes the candidates
    candidates: int = 20  # the retriever's top unseen items shown to the LLM
    recent: int = 10  # history items shown, most recent first
    readout: str = "letters"  # letters: listwise, letter probabilities (any backend) | likelihood | pmi (local backend)
    shuffles: int = 3  # letters: candidate orders per user; scores are averaged over them
    users: int | None = None  # rank only a fixed random sample of this many users (None: every user)
    seed: int = 0  # of the user sample and the shuffles
    llm: LLMConfig = field(default_factory=LLMConfig)

    def __post_init__(self) -> None:
        if not self.retriever:
            raise GenrecsysError("llmrank needs a retriever run: --param retriever=RUN_DIR (a finished genrecsys run)")
        if not 2 <= self.candidates <= MAX_CANDIDATES:
            raise GenrecsysError(f"llmrank: candidates must be in [2, {MAX_CANDIDATES}], got {self.candidates}")
        if self.readout not in READOUTS:
            raise GenrecsysError(f"llmrank: readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        if self.recent < 1 or self.shuffles < 1 or (self.users is not None and self.users < 1):
            raise GenrecsysError("llmrank: recent >= 1, shuffles >= 1 and users >= 1 (or unset) are required")


@dataclass
class Ranked:
    """One user's LLM ranking: the candidates (retriever order) and, per shuffle, the order
    shown and the probability of each candidate (candidate order; None: no usable answer)."""

    candidates: list[int]
    shown: list[list[int]]  # per shuffle: positions -> index into candidates
    probs: list[np.ndarray | None]  # per shuffle: (C,) probabilities summing to 1
    violations: int = 0  # shuffles whose most likely answer token was not a letter shown


class LLMRank(Recommender):
    Config = LLMRankConfig
    trainable = False

    def __init__(self, split: SplitData, config: LLMRankConfig | None = None) -> None:
        from genrecsys.reasoning.rationale import TitleCatalog
        from genrecsys.runs import load_run

        super().__init__(split, config)
        c = self.config
        cache_dir = split.meta.get("cache_dir")
        _, rsplit, retriever = load_run(c.retriever, cache_dir)
        if list(rsplit.item_ids) != list(split.item_ids) or list(rsplit.user_ids) != list(split.user_ids):
            raise GenrecsysError(f"llmrank: the retriever run {c.retriever} was trained on other data "
                                 f"({rsplit.n_users} users, {rsplit.n_items} items; here {split.n_users}, {split.n_items})")
        catalog = TitleCatalog.from_split(split)
        self.titles = [""] + [catalog.display(i) for i in range(1, split.n_items + 1)]
        self.train_items = split.train
        # kept out of the module tree: llmrank has no weights of its own (model.pt is empty),
        # the retriever is re-read from its run directory
        self._runtime: dict[str, Any] = {"retriever": retriever, "cache_dir": cache_dir}
        n = split.n_users
        self.sample = None if c.users is None else \
            set(np.random.default_rng(c.seed).choice(n, size=min(c.users, n), replace=False).tolist())
        self.counts = {"prompts": 0, "failed": 0, "violations": 0, "users_ranked": 0}

    @property
    def retriever(self):
        return self._runtime["retriever"]

    @property
    def llm(self):
        if "llm" not in self._runtime:
            from genrecsys.llm.client import LLM

            self._runtime["llm"] = LLM(self.config.llm, self._runtime["cache_dir"])
        return self._runtime["llm"]

    def reads_users(self) -> bool:
        """True: the user's training items are left out of the candidates (a sequence holds
        only the last ``max_len``), so the user index means someone; the service serves an
        anonymous visitor by its item-to-item rule."""
        return True

    # -- scoring ---------------------------------------------------------------------------------
    def _candidates(self, users: torch.Tensor, seqs: torch.Tensor, scores: torch.Tensor) -> list[list[int]]:
        """(B, I+1) retriever scores -> per row its top unseen items, best first. Seen: the
        user's training items and the sequence's (at test time it ends with the validation
        item), as the evaluator masks them."""
        masked = scores.clone()
        masked[:, 0] = -torch.inf
        masked.scatter_(1, seqs.clamp(min=0), -torch.inf)
        for b, u in enumerate(users.tolist()):
            masked[b, torch.as_tensor(self.train_items.of(u), dtype=torch.long, device=masked.device)] = -torch.inf
        # a stable sort, as in `score`: tied retriever scores fall in one order everywhere
        idx = masked.argsort(dim=1, descending=True, stable=True)[:, :self.config.candidates]
        values = masked.gather(1, idx)
        return [[i for v, i in zip(vr, ir) if v > -float("inf")] for vr, ir in zip(values.tolist(), idx.tolist())]

    def rank(self, users: torch.Tensor, seqs: torch.Tensor, rows: list[int] | None = None,
             candidates: list[list[int]] | None = None) -> dict[int, Ranked]:
        """Ask the LLM about ``rows`` (default: all) of a batch: row -> :class:`Ranked`."""
        from genrecsys.llm.types import SamplingParams

        c = self.config
        if candidates is None:
            with torch.no_grad():
                candidates = self._candidates(users, seqs, self.retriever.score(users, seqs).float())
        rows = list(range(len(users))) if rows is None else rows
        rows = [b for b in rows if len(candidates[b]) >= 2]
        if c.readout != "letters":
            return self._rank_titles(seqs, rows, candidates)
        prompts, where = [], []
        out: dict[int, Ranked] = {}
        for b in rows:
            cands = candidates[b]
            recent = self._recent(seqs[b])
            ranked = out[b] = Ranked(cands, [], [])
            for s in range(c.shuffles):
                order = np.random.default_rng([c.seed, s, *cands]).permutation(len(cands)).tolist()
                ranked.shown.append(order)
                prompts.append({"history": recent,
                                "candidates": [self.titles[cands[j]] for j in order],
                                "letters": [chr(65 + k) for k in range(len(cands))]})
                where.append(b)
        if not prompts:
            return out
        # one answer token; the top `candidates` first tokens cover every letter shown
        params = SamplingParams(max_tokens=1, logprobs=c.candidates)
        comps = self.llm.run_template("llm_rank", prompts, params=params, task="llmrank")
        for b, row, comp in zip(where, prompts, comps):
            ranked = out[b]
            probs, violated = letter_probs(comp.top_logprobs, row["letters"])
            ranked.violations += violated
            if probs is not None:  # shown position -> candidate index
                probs = probs[np.argsort(ranked.shown[len(ranked.probs)])]
            ranked.probs.append(probs)
        self._count(out, len(prompts))
        return out

    def _recent(self, seq: torch.Tensor) -> list[str]:
        """The titles of a (L,) sequence's last ``recent`` items, most recent first."""
        recent = [int(i) for i in seq.tolist() if int(i) > 0][-self.config.recent:][::-1]
        return [self.titles[i] for i in recent] or ["(none)"]

    def _count(self, out: dict[int, Ranked], prompts: int) -> None:
        self.counts["prompts"] += prompts
        self.counts["failed"] += sum(p is None for r in out.values() for p in r.probs)
        self.counts["violations"] += sum(r.violations for r in out.values())
        self.counts["users_ranked"] += len(out)

    def _rank_titles(self, seqs: torch.Tensor, rows: list[int], candidates: list[list[int]]) -> dict[int, Ranked]:
        """Pointwise readouts: each candidate's title scored as the answer (log-likelihood),
        minus its score under the content-free prompt for ``pmi`` (a title the model likes
        for anyone, e.g. a famous one, gains nothing from being famous)."""
        from genrecsys.llm.types import SamplingParams

        params = SamplingParams(max_tokens=1, score_choices=True)
        prompts = [{"history": self._recent(seqs[b]), "candidates": [self.titles[i] for i in candidates[b]]}
                   for b in rows]
        comps = self.llm.run_template("llm_rank_titles", prompts, params=params, task="llmrank") if prompts else []
        null = self._content_free(params) if self.config.readout == "pmi" else None
        out: dict[int, Ranked] = {}
        for b, row, comp in zip(rows, prompts, comps):
            probs = None
            if comp.ok and comp.choice_logprobs:
                ll = np.array([comp.choice_logprobs[t] for t in row["candidates"]])
                if null is not None:
                    ll = ll - np.array([null[t] for t in row["candidates"]])
                probs = np.exp(ll - ll.max())
                probs /= probs.sum()
            out[b] = Ranked(candidates[b], [list(range(len(candidates[b])))], [probs])
        self._count(out, len(prompts))
        return out

    def _content_free(self, params) -> dict[str, float]:
        """Every catalog title's score under the prompt with no history (one cached answer)."""
        if "null" not in self._runtime:
            titles = sorted(set(self.titles[1:]))
            (comp,) = self.llm.run_template("llm_rank_titles", [{"history": ["N/A"], "candidates": titles}],
                                            params=params, task="llmrank-null")
            if not comp.ok:
                raise GenrecsysError(f"llmrank: the content-free prompt was not answered: {comp.error}")
            self._runtime["null"] = comp.choice_logprobs
        return self._runtime["null"]

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            r = self.retriever.score(users, seqs).float().clone()  # (B, I+1); a retriever may return a view
        r[:, 0] = -torch.inf
        order = r.argsort(dim=1, descending=True, stable=True)
        out = torch.empty_like(r)
        # everything in the retriever's order, as scores <= 0 (its best item 0)
        out.scatter_(1, order, -torch.arange(r.shape[1], dtype=r.dtype, device=r.device).expand_as(r))
        rows = [b for b, u in enumerate(users.tolist()) if self.sample is None or u in self.sample]
        candidates = self._candidates(users, seqs, r)
        for b, ranked in self.rank(users, seqs, rows, candidates).items():
            valid = [p for p in ranked.probs if p is not None]
            if not valid:
                continue  # no usable answer: this user keeps the retriever's order
            mean = np.mean(valid, axis=0)
            n = len(ranked.candidates)
            # candidates above every other item (scores > 0), by the LLM, ties in the retriever's order
            llm = torch.as_tensor(1.0 + mean + 1e-6 * (n - np.arange(n)) / n, dtype=r.dtype, device=r.device)
            out[b, torch.as_tensor(ranked.candidates, device=r.device)] = llm
        out[:, 0] = -torch.inf
        return out


def letter_probs(top_logprobs: dict[str, float] | None, letters: list[str]) -> tuple[np.ndarray | None, int]:
    """(probabilities of the letters shown, renormalised over them; 1 if the most likely
    token was not one of them). None when no letter got any probability (no answer).

    >>> p, v = letter_probs({"B": -0.1, " A": -2.4, "The": -3.0}, ["A", "B", "C"])
    >>> p.round(3).tolist(), v
    ([0.091, 0.909, 0.0], 0)
    >>> letter_probs({"The": -0.1, "A": -2.0}, ["A", "B"])[1]
    1
    """
    if not top_logprobs:
        return None, 0
    probs = np.zeros(len(letters))
    index = {x: k for k, x in enumerate(letters)}
    best = max(top_logprobs, key=top_logprobs.get)
    for token, lp in top_logprobs.items():
        k = index.get(token.strip())
        if k is not None:
            probs[k] += float(np.exp(lp))
    violated = int(best.strip() not in index)
    total = probs.sum()
    return (probs / total if total > 0 else None), violated


def position_bias(ranked: dict[Any, Ranked]) -> dict[str, Any]:
    """How much the shuffled orders agree, over users with every shuffle answered.

    - ``top1_agreement``: share of users whose top item is the same in every order;
    - ``kendall_tau``: mean pairwise Kendall tau between the orders' candidate scores;
    - ``first_position_share``: share of answers whose top letter is A (1/C without bias);
    - ``position_mass``: mean probability per shown position.
    """
    from scipy.stats import kendalltau

    full = [r for r in ranked.values() if len(r.probs) > 1 and all(p is not None for p in r.probs)]
    if not full:
        return {"users": 0}
    agree, taus, first, mass = [], [], [], []
    for r in full:
        tops = {int(np.argmax(p)) for p in r.probs}
        agree.append(len(tops) == 1)
        for i in range(len(r.probs)):
            shown = np.asarray(r.probs[i])[r.shown[i]]  # probability by shown position
            first.append(int(np.argmax(shown)) == 0)
            mass.append(shown)
            for j in range(i + 1, len(r.probs)):
                tau = kendalltau(r.probs[i], r.probs[j]).statistic
                if np.isfinite(tau):
                    taus.append(tau)
    width = min(len(m) for m in mass)
    return {"users": len(full), "shuffles": len(full[0].probs), "top1_agreement": float(np.mean(agree)),
            "kendall_tau": float(np.mean(taus)) if taus else float("nan"),
            "first_position_share": float(np.mean(first)), "uniform_share": 1.0 / width,
            "position_mass": np.mean([m[:width] for m in mass], axis=0).round(4).tolist()}
