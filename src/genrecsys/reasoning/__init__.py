"""RELAND (Tian et al., RecSys'24): an LLM reasoning pool shared by retrieval.

One concept per module:

- ``encoder``: the behaviour encoder, user matrix M (n_users + 1, d), row 0 = padding
- ``sampling``: adaptive seed-user sampling (K-means representativeness + importance)
- ``rationale``: parsing a CoT answer into steps and matching named items to the catalog
- ``pool``: the reasoning pool, built incrementally through the LLM cache
- ``retrieval``: nearest seed by cosine (exact or FAISS) and per-user rationales
- ``fusion``: the fusion layer that feeds rationales to a recommender

Nothing here imports torch at import time.
"""
from genrecsys.reasoning.pool import PoolConfig, ReasoningPool, build_pool, llm_metrics, load_pool
from genrecsys.reasoning.rationale import Rationale, TitleCatalog, parse_rationale
from genrecsys.reasoning.retrieval import Assignment, assign_rationales, nearest_seeds
from genrecsys.reasoning.sampling import SamplingConfig, SeedSample, adaptive_seed_sample, uniform_seed_sample

__all__ = ["Assignment", "PoolConfig", "Rationale", "ReasoningPool", "SamplingConfig", "SeedSample", "TitleCatalog",
           "adaptive_seed_sample", "assign_rationales", "build_pool", "llm_metrics", "load_pool", "nearest_seeds",
           "parse_rationale", "uniform_seed_sample"]
