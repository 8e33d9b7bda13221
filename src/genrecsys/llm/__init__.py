"""LLM layer: batch-first generation over local / OpenAI-compatible / llama.cpp backends,
versioned prompt templates, an exactly-once SQLite cache, accounting, parsing, safety.

>>> from genrecsys.llm import LLM, Request, SamplingParams
>>> from genrecsys.llm.client import EchoBackend
>>> llm = LLM(backend=EchoBackend(), cache_path=":memory:")
>>> llm.generate([Request.chat("hi", params=SamplingParams(max_tokens=8))])[0].text
'echo: hi'

Importing this package does not import torch or transformers; the local backend does,
when it is built.
"""
from genrecsys.llm.accounting import JobStats, Price, PriceTable, Usage
from genrecsys.llm.backends import BACKENDS, Backend, make_backend
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.client import LLM
from genrecsys.llm.job import generate, keep_recent, render_requests
from genrecsys.llm.parse import ParseError
from genrecsys.llm.templates import PromptTemplate, list_templates, load_template
from genrecsys.llm.types import Completion, Request, SamplingParams

__all__ = ["LLM", "Backend", "BACKENDS", "make_backend", "LLMCache", "Request", "Completion", "SamplingParams",
           "PromptTemplate", "load_template", "list_templates", "generate", "render_requests", "keep_recent",
           "JobStats", "Usage", "Price", "PriceTable", "ParseError"]
