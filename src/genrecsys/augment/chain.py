"""GENRE §3.5 and Appendix B: chained and combined augmentation.

- ``chain`` (UP -> NG): profile users, then generate items for the new users with a valid
  profile, their topics in the prompt. Users whose profile came back invalid (unparsable,
  or no allowed topic) are removed from the variant, as in GENRE's "Chain" dataset (97%
  of the interactions kept); the manifest records how many. Users a ``limit`` left
  unprofiled are not removed: nothing was learned about them.
- ``all`` (ALL): summarizer titles, then profiles for all users, then chain-generated items
  for new users with a valid profile; users without one keep their history unchanged.

>>> # steps = chain_steps(open_variant("mind-small"), llm)
"""
from __future__ import annotations

from typing import Iterable

from genrecsys.augment.generate import GenerateConfig, generate_items
from genrecsys.augment.profile import Profile, ProfileConfig, profile_users
from genrecsys.augment.summarize import SummarizeConfig, summarize_items
from genrecsys.augment.variant import Step, Variant
from genrecsys.data.schema import Dataset


def interests_of(profiles: dict[str, Profile | None]) -> dict[str, list[str]]:
    """User -> ranked topics, for the users with a valid profile."""
    return {u: list(p.topics) for u, p in profiles.items() if p is not None and p.valid}


def drop_users(ds: Dataset, users: Iterable[str]) -> Dataset:
    """``ds`` without these users' interactions, user rows and impressions."""
    gone = set(users)
    imp = ds.impressions
    return Dataset(name=ds.name, interactions=ds.interactions[~ds.interactions["user"].isin(gone)],
                   items=ds.items, users=ds.users[~ds.users["user"].isin(gone)],
                   impressions=None if imp is None else imp[~imp["user"].isin(gone)])


def _after(step: Step, like: Variant) -> Variant:
    return Variant(step.dataset, step.synthetic, like.manifest, like.source)


def chain_steps(source: Variant, llm, profile: ProfileConfig | None = None, generate: GenerateConfig | None = None, *,
                filter_unprofiled: bool = True) -> list[Step]:
    """Profiler then chain generator; with ``filter_unprofiled``, users without a valid
    profile are removed (the "Chain" dataset)."""
    p_step, profiles = profile_users(source, llm, profile)
    g_step = generate_items(_after(p_step, source), llm, generate, interests=interests_of(profiles), task="chain")
    if filter_unprofiled:
        invalid = sorted(u for u, p in profiles.items() if p is None or not p.valid)
        before = len(g_step.dataset.interactions)
        g_step.dataset = drop_users(g_step.dataset, invalid)
        g_step.synthetic = g_step.synthetic[~g_step.synthetic["user"].isin(set(invalid))].reset_index(drop=True)
        after = len(g_step.dataset.interactions)
        g_step.quality.update(users_removed=len(invalid),
                              interactions_kept_fraction=round(after / before, 6) if before else 1.0)
    g_step.settings["filter_unprofiled"] = filter_unprofiled
    return [p_step, g_step]


def all_steps(source: Variant, llm, summarize: SummarizeConfig | None = None, profile: ProfileConfig | None = None,
              generate: GenerateConfig | None = None) -> list[Step]:
    """GENRE's ALL: summarize, then profile + chain generation, keeping every user."""
    s_step = summarize_items(source, llm, summarize)
    return [s_step, *chain_steps(_after(s_step, source), llm, profile, generate, filter_unprofiled=False)]
