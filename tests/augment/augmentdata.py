"""Test data for augmentation: a tiny news dataset whose right answers are known, the
project's real OpenAI-compatible test server answering from a script, and the fixtures.

The fixtures live here, not in a conftest.py: a second conftest module under tests/
clashes with tests/llm/conftest.py when ``--doctest-modules`` collects both. Test modules
import the fixtures they use by name.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from genrecsys.config import LLMConfig
from genrecsys.data.schema import Dataset
from genrecsys.llm.client import LLM
from openai_server import OpenAITestServer

# item, category, subcategory, title, abstract. "HELD" items are each user's last two
# interactions: the leakage guard must keep them out of every user prompt.
NEWS = [
    ("N1", "health", "medicine", "Hospital opens new wing", "Beds for the city."),
    ("N2", "travel", "flights", "Flights get cheaper this winter", "Airlines cut fares."),
    ("N3", "finance", "markets", "Stocks rally on rate hopes", "Markets gain."),
    ("N4", "finance", "banks", "Bank profits beat forecasts", "Earnings season."),
    ("N5", "lifestyle", "cooking", "Mystery stew recipe", "A puzzle dish."),
    ("N6", "sports", "football", "Derby ends in a draw", ""),
    ("N7", "sports", "tennis", "Open final goes to five sets", ""),
    ("N8", "sports", "golf", "Golfer wins playoff", ""),
    ("N9", "sports", "racing", "Rookie takes pole position", ""),
    ("N10", "sports", "cycling", "Sprinter wins the stage", ""),
    ("N11", "sports", "boxing", "Champion keeps the belt", ""),
    ("H1", "news", "held", "HELD story one", ""),
    ("H2", "news", "held", "HELD story two", ""),
]
HISTORY = {"alice": ["N1", "N2"], "bob": ["N3", "N4"], "carol": ["N5"], "dave": ["N6", "N7", "N8", "N9", "N10", "N11"]}

SUMMARIES = {
    "Hospital opens new wing": "[City hospital adds a new wing]",
    "Flights get cheaper this winter": 'New title: "Winter airfares drop"',
    "Stocks rally on rate hopes": "[new title]",  # the format placeholder echoed: unusable
}
ALICE = ("Hospital opens", "City hospital")  # her first item, before and after the summarizer
PROFILES = {
    ALICE: "[topics] Health, gossip, travel\n[region] Miami, Florida",
    ("Stocks rally",): "Topics: finance, economy\nRegion: none",
    ("Mystery stew",): "I cannot tell what this user likes.",
    ("Derby ends",): "[topics] sports stuff, celebrity\n[region] none",
}
ALICE_1 = {"title": "Free flu shots at the new wing", "abstract": "The hospital offers vaccines.", "category": "health"}
ALICE_2 = {"title": "Hospital opens new wing", "abstract": "A copy of a real title.", "category": "Health"}
BOB_1 = {"title": "Rates and you", "abstract": "What the hold means.", "category": "gossip"}


def generated(prompt: str) -> str | None:
    if any(k in prompt for k in ALICE):
        if "Free flu shots" in prompt:  # the second item: the first is listed as already invented
            return "Sure!\n```json\n" + json.dumps(ALICE_2) + "\n```"
        return json.dumps(ALICE_1)
    if "Stocks rally" in prompt:
        return "no idea, sorry" if "Rates and you" in prompt else json.dumps(BOB_1)
    return None


def scripted_reply(prompt: str) -> str | None:
    """The answer for a prompt of one of the three GENRE templates (None: the server's own)."""
    if "Write one better title" in prompt:
        return next((a for k, a in SUMMARIES.items() if f"title: {k}" in prompt), None)
    if "Allowed topics" in prompt:
        return next((a for keys, a in PROFILES.items() if any(k in prompt for k in keys)), None)
    if "Invent one new item" in prompt:
        return generated(prompt)
    return None


class ScriptedServer(OpenAITestServer):
    """The project's test server; ``reply(prompt)`` chooses the answer text, and when it
    returns None the server behaves as usual (MODE markers, ``answer-<hash>``)."""

    def __init__(self, reply: Callable[[str], str | None]):
        self.reply = reply
        super().__init__()

    def _handle(self, h, body):
        msgs = body["messages"]
        prompt = [m for m in msgs if m["role"] == "user"][0]["content"]
        text = self.reply(prompt)
        if text is None:
            return super()._handle(h, body)
        with self._lock:
            self.bodies.append(body)
            self.attempts[prompt] += 1
        resp = {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": sum(len(x["content"].split()) for x in msgs),
                          "completion_tokens": len(text.split())}}
        self._send(h, 200, resp)
        with self._lock:
            self.answered[prompt] += 1


def news_dataset() -> Dataset:
    items = pd.DataFrame(NEWS, columns=["item", "category", "subcategory", "title", "abstract"])
    rows = []
    for user, hist in HISTORY.items():
        rows += [(user, item, t) for t, item in enumerate(hist, start=1)]
        rows += [(user, "H1", 100), (user, "H2", 101)]
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return Dataset("tiny-news", inter, items, pd.DataFrame({"user": list(HISTORY)}))


def make_llm(server_url: str, tmp_path: Path, model: str = "gpt-4o-mini") -> LLM:
    cfg = LLMConfig(backend="openai", base_url=server_url, model=model, concurrency=4, timeout_s=5, max_attempts=2)
    return LLM(cfg, cache_dir=tmp_path / "llm-home", cache_path=tmp_path / "cache.sqlite")


def tree_digest(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes: equal digests = untouched."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def scripted():
    s = ScriptedServer(scripted_reply)
    yield s
    s.close()


@pytest.fixture
def news_dir(tmp_path) -> Path:
    return news_dataset().save(tmp_path / "tiny-news")


@pytest.fixture
def llm(scripted, tmp_path):
    client = make_llm(scripted.url, tmp_path)
    yield client
    client.close()
