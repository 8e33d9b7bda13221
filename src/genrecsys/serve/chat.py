"""The conversational recommender: one SQLite conversation per visitor, candidates from the
run's model plus item-text retrieval, and a reply from the LLM layer that can only
recommend catalog items.

A turn: (1) the user's message is stored (committed before the LLM is asked, so a server
killed mid-turn loses at most the reply); (2) titles mentioned in the message are matched
against the catalog and join the conversation's liked items; (3) candidates: the model's
top items for the known user or for the liked items (as an anonymous visitor), interleaved
with the items whose text is nearest the message (embedded MiniLM + FAISS inner product on
unit vectors), liked items excluded; (4) the LLM writes ``{"reply", "items"}`` under the
``chat_recommend`` contract (item titles from the candidates) where the backend enforces
contracts; otherwise the answer is parsed and titles that are not catalog items are
dropped. Either way the turn reports ``dropped`` (0 when constrained decoding held) and
the reply is stored with its items.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.errors import GenrecsysError

CANDIDATES = 20  # candidate items shown to the LLM per turn
HISTORY_TURNS = 6  # earlier messages put in the prompt
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, run TEXT NOT NULL, user TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (conversation TEXT NOT NULL REFERENCES conversations(id), turn INTEGER NOT NULL,
    role TEXT NOT NULL, text TEXT NOT NULL, items TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (conversation, turn));
"""


class ChatError(GenrecsysError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Conversations:
    """The SQLite store (WAL; one writer at a time through a lock; every write committed)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed turn survives a power cut, not just a kill
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def create(self, run: str, user: str | None) -> str:
        cid = uuid.uuid4().hex
        with self._lock:
            self._db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?)", (cid, run, user, time.time()))
        return cid

    def get(self, cid: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT run, user, created FROM conversations WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise ChatError(f"unknown conversation {cid!r}", 404)
            msgs = self._db.execute("SELECT role, text, items FROM messages WHERE conversation = ? ORDER BY turn",
                                    (cid,)).fetchall()
        return {"id": cid, "run": row[0], "user": row[1], "created": row[2],
                "messages": [{"role": r, "text": t, "items": json.loads(i)} for r, t, i in msgs]}

    def add(self, cid: str, role: str, text: str, items: list[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (turn,) = self._db.execute("SELECT COUNT(*) FROM messages WHERE conversation = ?", (cid,)).fetchone()
                self._db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                                 (cid, turn, role, text, json.dumps(items), time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()


class TextIndex:
    """Item-text retrieval for one run: unit MiniLM vectors of every item in a FAISS
    inner-product index, and the same encoder for queries."""

    def __init__(self, split, encoder_dir: str | None, cache_dir: str | Path | None):
        import faiss

        from genrecsys.generative.semantic_ids import text_vectors
        from genrecsys.reasoning.fusion import load_text_encoder

        vectors = np.ascontiguousarray(text_vectors(split, encoder_dir, cache_dir), dtype=np.float32)  # (I, H)
        faiss.normalize_L2(vectors)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)
        self.encoder = load_text_encoder(encoder_dir, cache_dir)

    def search(self, text: str, k: int) -> list[int]:
        import faiss

        q = np.ascontiguousarray(self.encoder.encode([text], convert_to_numpy=True, show_progress_bar=False),
                                 dtype=np.float32)  # (1, H)
        faiss.normalize_L2(q)
        _, ix = self.index.search(q, k)
        return [int(i) + 1 for i in ix[0] if i >= 0]  # FAISS rows are items 1..I


class Chatbot:
    """Turns of conversation over a `Service`'s runs; one LLM, one store, one text index per run.

    ``encoder``: the sentence-transformers directory for item-text retrieval (None: the
    embedded MiniLM; ``"none"``: no text retrieval, candidates from the model alone)."""

    def __init__(self, service, db_path: str | Path, llm_cfg=None, cache_dir: str | Path | None = None, *,
                 encoder: str | None = None, llm=None):
        self.service, self.cache_dir, self.encoder = service, cache_dir, encoder
        self.store = Conversations(db_path)
        self._llm, self._llm_cfg = llm, llm_cfg
        self._indexes: dict[str, TextIndex | None] = {}
        self._lock = threading.Lock()  # one LLM call at a time: the local model is not re-entrant

    @property
    def llm(self):
        if self._llm is None:
            from genrecsys.config import LLMConfig
            from genrecsys.llm.client import LLM

            self._llm = LLM(self._llm_cfg or LLMConfig(), self.cache_dir)
        return self._llm

    def _text_index(self, run) -> TextIndex | None:
        if self.encoder == "none":
            return None
        key = f"{run.name}:{run.version}"
        if key not in self._indexes:
            self._indexes[key] = TextIndex(run.split, self.encoder, self.cache_dir)
        return self._indexes[key]

    async def turn(self, run_name: str, message: str, *, conversation: str | None = None, user: str | None = None,
                   k: int = 5) -> dict[str, Any]:
        run = self.service.run(run_name)
        if conversation is None:
            if user is not None:
                run.user_index(user)  # unknown user: 404 before anything is stored
            conversation = self.store.create(run.name, user)
        conv = self.store.get(conversation)
        user = conv["user"]
        mentioned = self.mentioned(run, message)
        mentioned_ids = [run.describe(i)["id"] for i in mentioned]
        self.store.add(conversation, "user", message, mentioned_ids)
        said = [i for m in conv["messages"] if m["role"] == "user" for i in m["items"]] + mentioned_ids
        liked = [run.item_index(i) for i in dict.fromkeys(said)]  # every item the user named, first mention first
        cands = await self.candidates(run, message, user, liked)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, self._ask, run, conv["messages"], message, cands, k)
        self.store.add(conversation, "assistant", answer["reply"], [run.describe(i)["id"] for i in answer["items"]])
        return {"conversation": conversation, "run": run.name, "reply": answer["reply"],
                "items": [run.describe(i) for i in answer["items"]],
                "mentioned": [run.describe(i) for i in mentioned], "liked": [run.describe(i) for i in liked],
                "candidates": len(cands), "constrained": answer["constrained"], "dropped": answer["dropped"],
                "parsed": answer["parsed"]}

    @staticmethod
    def mentioned(run, message: str) -> list[int]:
        """Catalog items whose title occurs in the message as whole words (titles of at least
        4 characters, longest first, so "Star Wars" is not also "Star")."""
        from genrecsys.llm.parse import norm_words

        titles = run.split.meta.get("_chat_title_keys")
        if titles is None:  # normalised once per loaded run, not per message
            titles = sorted(((i, norm_words(str(t))) for i, t in enumerate(run.titles) if i), key=lambda p: -len(p[1]))
            run.split.meta["_chat_title_keys"] = titles
        text = f" {norm_words(message)} "
        found: list[int] = []
        for i, t in titles:
            if len(t) >= 4 and f" {t} " in text:
                found.append(i)
                text = text.replace(f" {t} ", " ")
        return found

    async def candidates(self, run, message: str, user: str | None, liked: list[int]) -> list[int]:
        if user is not None:
            q = run.user_query(user, CANDIDATES)
            q = type(q)(q.user, np.concatenate([q.seq, np.asarray(liked, dtype=np.int64)]), CANDIDATES)
        elif liked:
            q = run.visitor_query([run.describe(i)["id"] for i in liked], CANDIDATES)
        else:
            q = None
        from_model = list((await self.service.rank(run.name, q)).items) if q is not None else []
        index = await asyncio.get_running_loop().run_in_executor(None, self._text_index, run)
        from_text = index.search(message, CANDIDATES + len(liked)) if index is not None else []
        if not from_model and not from_text:  # nothing to go on: the most popular items
            from_model = list(np.argsort(-run.popularity, kind="stable")[:CANDIDATES])
        out: list[int] = []
        for pair in zip(from_model + [None] * len(from_text), from_text + [None] * len(from_model)):
            for i in pair:
                if i is not None and int(i) not in out and int(i) not in liked:
                    out.append(int(i))
        return out[:CANDIDATES]

    def _ask(self, run, earlier: list[dict], message: str, cands: list[int], k: int) -> dict[str, Any]:
        from genrecsys.llm.parse import ParseError, parse_json

        by_title: dict[str, int] = {}
        for i in cands:
            by_title.setdefault(str(run.titles[i]), i)
        catalog = {str(t).casefold(): i for i, t in enumerate(run.titles) if i}
        history = "\n".join(f"{m['role']}: {m['text']}" for m in earlier[-HISTORY_TURNS:])
        row = {"message": message, "candidates": list(by_title), "k": k, "history": history}
        with self._lock:
            (comp,) = self.llm.run_template("chat_recommend", [row], task="chat")
        constrained = bool(self.llm.contracts_on)
        try:
            obj = parse_json(comp.text)
            reply, titles, parsed = str(obj.get("reply", "")).strip(), obj.get("items", []), True
            titles = titles if isinstance(titles, list) else []
        except ParseError:
            reply, titles, parsed = comp.text.strip(), [], False
        items, dropped = [], 0
        for t in titles:
            i = by_title.get(str(t), catalog.get(str(t).casefold()))
            if i is None:
                dropped += 1  # not a catalog item: never shown
            elif i not in items:
                items.append(i)
        if not items:  # nothing usable came back: the top candidates, said so
            items = cands[:k]
            reply = reply or "Here are some picks you might like."
        return {"reply": reply, "items": items[:k], "constrained": constrained, "dropped": dropped,
                "parsed": parsed}

    def close(self) -> None:
        self.store.close()
        if self._llm is not None:
            self._llm.close()
