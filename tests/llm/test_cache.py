import json
import sqlite3
import subprocess
import sys

import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.types import Completion

META = {"backend": "b", "model": "m", "template": "t", "template_version": "1", "task": "x"}


def test_values_are_json_never_pickle(cache):
    cache.put("k", Completion(text="héllo", prompt_tokens=3), backend="b", model="m")
    raw = sqlite3.connect(cache.path).execute("SELECT value FROM completions").fetchone()[0]
    assert json.loads(raw)["text"] == "héllo"


def test_cache_file_uses_write_ahead_logging(cache):
    mode = sqlite3.connect(cache.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_first_committed_answer_wins(cache):
    assert cache.put("k", Completion(text="first"), backend="b", model="m")
    assert not cache.put("k", Completion(text="second"), backend="b", model="m")
    assert cache.get_many(["k"])["k"].text == "first"


def test_errors_are_refused(cache):
    with pytest.raises(ValueError):
        cache.put("k", Completion.failed("boom"), backend="b", model="m")


def test_get_many_handles_more_keys_than_sqlite_parameters(cache):
    cache.put_many([(f"k{i}", Completion(text=str(i)), META) for i in range(1200)])
    got = cache.get_many([f"k{i}" for i in range(1200)] + ["missing"])
    assert len(got) == 1200 and got["k1199"].text == "1199"


def test_stats_export_and_selective_clear(cache):
    cache.put_many([("a", Completion(text="x", prompt_tokens=2, completion_tokens=1), META),
                    ("b", Completion(text="y", prompt_tokens=3, completion_tokens=4), {**META, "template": "u"})])
    st = cache.stats()
    assert st.rows == 2 and st.prompt_tokens == 5 and st.completion_tokens == 5
    assert st.by_template == {"t@1": 1, "u@1": 1}
    rows = list(cache.export(template="u"))
    assert [r["key"] for r in rows] == ["b"] and rows[0]["completion"]["text"] == "y"
    assert cache.clear(template="t") == 1 and len(cache) == 1


def test_imported_rows_keep_their_time_and_never_replace_a_cached_answer(tmp_path, cache):
    cache.put_many([("a", Completion(text="x"), {**META, "created": 100.0}),
                    ("b", Completion(text="y"), META)])
    other = LLMCache(tmp_path / "other.sqlite")
    other.put("b", Completion(text="mine"), backend="b", model="m")
    assert other.import_rows(cache.export()) == 1
    assert other.get_many(["b"])["b"].text == "mine"
    assert [r["created"] for r in other.export() if r["key"] == "a"] == [100.0]


@pytest.mark.parametrize("bad, message", [
    ({"key": "k", "backend": "b", "model": "m"}, "missing completion"),
    ({"key": "", "backend": "b", "model": "m", "completion": {"text": "x"}}, "non-empty string key"),
    ({"key": "k", "backend": "b", "model": "m", "completion": {"text": "", "error": "boom"}}, "failed request"),
    (["not", "a", "row"], "not a JSON object"),
])
def test_a_malformed_import_row_imports_nothing(cache, bad, message):
    good = {"key": "ok", "backend": "b", "model": "m", "completion": {"text": "fine"}}
    with pytest.raises(GenrecsysError, match=f"row 2: .*{message}"):
        cache.import_rows([good, bad])
    assert len(cache) == 0


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not a database" * 100)
    with pytest.raises(GenrecsysError, match="not a usable LLM cache"):
        LLMCache(bad)


WRITER = """
import sys
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.types import Completion
c = LLMCache(sys.argv[1])
w = int(sys.argv[2])
meta = {"backend": "b", "model": "m"}
for start in range(0, 200, 5):
    rows = [(f"w{w}-{i}", Completion(text=f"w{w}-{i}"), meta) for i in range(start, start + 5)]
    rows += [(f"shared-{start}", Completion(text=f"shared-{start}-by-{w}"), meta)]
    c.put_many(rows)
"""


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    LLMCache(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)]) for w in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    cache = LLMCache(path)
    assert len(cache) == 4 * 200 + 40
    got = cache.get_many([f"w{w}-{i}" for w in range(4) for i in range(200)])
    assert len(got) == 800 and all(c.text == k for k, c in got.items())
