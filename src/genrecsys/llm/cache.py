"""Persistent completion cache: one SQLite file in WAL mode, JSON values, never pickle.

The cache is what makes LLM jobs exactly-once: a job commits every answer as soon as it
arrives, and a rerun asks the backend only for the keys that have no committed row. The
first committed answer for a key wins (``INSERT OR IGNORE``), so two processes racing on
the same prompt cannot overwrite each other, and nothing a writer committed is lost.
Errors are not cached: a failed row is retried by the next run.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from genrecsys.errors import GenrecsysError
from genrecsys.llm.types import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    template TEXT,
    template_version TEXT,
    task TEXT,
    request TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CacheStats:
    path: str
    rows: int
    bytes: int
    by_model: dict[str, int]
    by_template: dict[str, int]
    prompt_tokens: int
    completion_tokens: int


class AnswerCache(Protocol):
    """What a job needs of a cache: :class:`LLMCache`, or
    :class:`genrecsys.llm.distributed.RemoteCache` for actors on other nodes."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]: ...

    def put_many(self, rows: list[tuple[str, Completion, dict[str, Any]]]) -> int: ...


class LLMCache:
    """A thread-safe handle on the cache file (one SQLite connection per thread).

    >>> import tempfile, os
    >>> c = LLMCache(os.path.join(tempfile.mkdtemp(), "llm.sqlite"))
    >>> c.put("k", Completion(text="hi"), backend="b", model="m")
    True
    >>> c.get_many(["k", "missing"])["k"].text
    'hi'
    """

    def __init__(self, path: str | Path, timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout = timeout_s
        self._local = threading.local()
        try:
            con = self._con()
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)
            con.commit()
        except sqlite3.DatabaseError as exc:
            raise GenrecsysError(f"{self.path}: not a usable LLM cache ({exc})") from None

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so writers queue on the
            # lock (busy_timeout) instead of failing with "database is locked" on upgrade.
            con = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Completion] = {}
        con = self._con()
        for i in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[i:i + 500]
            q = f"SELECT key, value FROM completions WHERE key IN ({','.join('?' * len(chunk))})"
            for key, value in con.execute(q, chunk):
                out[key] = Completion.from_dict(json.loads(value))
        return out

    def put(self, key: str, completion: Completion, *, backend: str, model: str, request: dict[str, Any] | None = None,
            template: str | None = None, template_version: str | None = None, task: str | None = None) -> bool:
        """Commit one answer; returns False if the key already had one (the first wins)."""
        return self.put_many([(key, completion, dict(backend=backend, model=model, request=request, template=template,
                                                     template_version=template_version, task=task))]) == 1

    def put_many(self, rows: list[tuple[str, Completion, dict[str, Any]]]) -> int:
        """Commit several answers in one transaction; returns how many were new. A row's
        meta may carry ``created`` (an imported answer keeps its original time)."""
        if not rows:
            return 0
        now = time.time()
        values = []
        for key, comp, meta in rows:
            if not comp.ok:
                raise ValueError("errors are not cached; only answered requests are")
            value = comp.to_dict()
            value["cached"] = False
            values.append((key, meta["backend"], meta["model"], meta.get("template"), meta.get("template_version"),
                           meta.get("task"), json.dumps(meta.get("request") or {}, ensure_ascii=False),
                           json.dumps(value, ensure_ascii=False), meta.get("created") or now))
        con = self._con()
        for attempt in range(5):
            try:
                con.execute("BEGIN IMMEDIATE")
                before = con.total_changes
                con.executemany("INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?,?,?)", values)
                added = con.total_changes - before
                con.execute("COMMIT")
                return added
            except sqlite3.OperationalError as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.05 * 2 ** attempt)
        return 0  # unreachable

    def __len__(self) -> int:
        return self._con().execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def stats(self) -> CacheStats:
        con = self._con()
        rows = len(self)
        by_model = dict(con.execute("SELECT backend || ':' || model, COUNT(*) FROM completions GROUP BY 1").fetchall())
        by_template = dict(con.execute(
            "SELECT COALESCE(template, '(none)') || COALESCE('@' || template_version, ''), COUNT(*) "
            "FROM completions GROUP BY 1").fetchall())
        pt, ct = con.execute("SELECT COALESCE(SUM(json_extract(value, '$.prompt_tokens')), 0), "
                             "COALESCE(SUM(json_extract(value, '$.completion_tokens')), 0) FROM completions").fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return CacheStats(str(self.path), rows, size, by_model, by_template, int(pt), int(ct))

    def export(self, template: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row as a JSON-able dict (key, metadata, request, completion), oldest first."""
        q = "SELECT key, backend, model, template, template_version, task, request, value, created FROM completions"
        args: tuple = ()
        if template:
            q += " WHERE template = ?"
            args = (template,)
        for key, backend, model, tmpl, ver, task, request, value, created in self._con().execute(q + " ORDER BY created, key", args):
            yield {"key": key, "backend": backend, "model": model, "template": tmpl, "template_version": ver,
                   "task": task, "created": created, "request": json.loads(request), "completion": json.loads(value)}

    def import_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Commit rows as `export` yields them (from another machine's cache, say) in one
        transaction; returns how many were new. A key that already has an answer keeps it
        (the first wins, as for `put`). Every row is checked before anything is written, so a
        malformed file imports nothing.

        >>> import tempfile, os
        >>> a = LLMCache(os.path.join(tempfile.mkdtemp(), "a.sqlite"))
        >>> _ = a.put("k", Completion(text="hi"), backend="b", model="m")
        >>> b = LLMCache(os.path.join(tempfile.mkdtemp(), "b.sqlite"))
        >>> b.import_rows(a.export()), b.import_rows(a.export()), b.get_many(["k"])["k"].text
        (1, 0, 'hi')
        """
        batch = []
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise GenrecsysError(f"row {n}: not a JSON object")
            missing = [k for k in ("key", "backend", "model", "completion") if k not in row]
            if missing:
                raise GenrecsysError(f"row {n}: not an exported cache row (missing {', '.join(missing)})")
            comp = row["completion"]
            if not isinstance(row["key"], str) or not row["key"] or not isinstance(comp, dict) \
                    or not isinstance(comp.get("text"), str):
                raise GenrecsysError(f"row {n}: needs a non-empty string key and a completion with a text")
            completion = Completion.from_dict(comp)
            if not completion.ok:
                raise GenrecsysError(f"row {n}: a failed request ({completion.error}); errors are not cached")
            created = row.get("created")
            batch.append((row["key"], completion, {
                "backend": str(row["backend"]), "model": str(row["model"]), "request": row.get("request"),
                "template": row.get("template"), "template_version": row.get("template_version"),
                "task": row.get("task"), "created": float(created) if isinstance(created, (int, float)) else None}))
        return self.put_many(batch)

    def clear(self, template: str | None = None, model: str | None = None) -> int:
        """Delete rows (all, or those of one template and/or model); returns how many."""
        where, args = [], []
        if template:
            where.append("template = ?")
            args.append(template)
        if model:
            where.append("model = ?")
            args.append(model)
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        cur = con.execute("DELETE FROM completions" + (" WHERE " + " AND ".join(where) if where else ""), args)
        con.execute("COMMIT")
        n = cur.rowcount
        con.execute("VACUUM") if not where else None
        return n
