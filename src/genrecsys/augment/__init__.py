"""GENRE data augmentation: LLM-written item titles, user profiles and synthetic items,
each written as a new, versioned dataset variant (the original is never modified).

One task per file: ``summarize`` (news summarizer, §3.2), ``profile`` (user profiler,
§3.3), ``generate`` (personalized generator, §3.4), ``chain`` (profiler -> generator, §3.5,
and ALL, Appendix B); ``variant`` is the directory format and manifest, ``run`` the one
entry point, ``vocab`` the closed vocabularies, ``inputs`` what prompts read.

>>> # from genrecsys.augment import augment
>>> # augment("profile", "ml-100k", "runs/ml-100k-up", LLM(cfg))

Importing this package does not import torch.
"""
from genrecsys.augment.generate import (GenerateConfig, generate_items, history_with_synthetic, synthetic_histories,
                                        synthetic_item_table)
from genrecsys.augment.profile import Profile, ProfileConfig, profile_users
from genrecsys.augment.run import TASKS, AugmentConfig, augment
from genrecsys.augment.summarize import SummarizeConfig, summarize_items
from genrecsys.augment.variant import Variant, load_variant, open_variant, read_artefacts, write_variant
from genrecsys.augment.vocab import Vocabulary

__all__ = ["augment", "AugmentConfig", "TASKS", "SummarizeConfig", "summarize_items", "ProfileConfig", "Profile",
           "profile_users", "GenerateConfig", "generate_items", "history_with_synthetic", "synthetic_histories",
           "synthetic_item_table",
           "Variant", "open_variant", "load_variant", "read_artefacts", "write_variant", "Vocabulary"]
