"""Crash-safe writes: build beside the target, publish in one rename.

Readers (and a rerun after a crash) see either the old directory / file or the complete new
one, never a half-written one.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> with building_dir(root / "out") as tmp:
...     _ = (tmp / "a.txt").write_text("1")
>>> sorted(p.name for p in (root / "out").iterdir())
['a.txt']
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from genrecsys.errors import GenrecsysError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per output there
    fcntl = None  # type: ignore[assignment]


@contextmanager
def building_dir(target: Path, replace: bool = False) -> Iterator[Path]:
    """A temporary directory beside ``target`` that becomes ``target`` in one rename when the
    block succeeds, and disappears when it fails.

    ``replace=False`` (shared caches): if another process published ``target`` first, its copy
    is kept. ``replace=True`` (outputs the caller owns): an existing ``target`` is replaced.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        if replace:
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        else:
            try:
                tmp.rename(target)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def building_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` (same suffix, so ``np.save`` / ``np.savez`` keep the
    name) that replaces ``target`` in one rename when the block succeeds, and is removed when
    it fails. The name is unique per call: processes that fill the same shared cache entry at
    once each write their own file, and the last complete one wins.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:  # mkstemp would make it 0600 and the rename would publish that: create it as open() does
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}{target.suffix or '.tmp'}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Busy(GenrecsysError):
    """Another process holds the lock on this path (see ``exclusive``)."""


_held: set[Path] = set()  # what this process holds: re-entering is a no-op (its threads share the lock)


@contextmanager
def exclusive(target: Path, doing: str = "writing") -> Iterator[None]:
    """Hold an exclusive lock on ``target`` for the block, or raise ``Busy`` at once if another
    process holds it.

    The lock is a hidden ``.NAME.lock`` beside ``target``, flocked, so a crashed or killed
    holder frees it with its process and nothing has to be cleaned up by hand; the file is
    removed on release. Processes that share an output directory (two training jobs, or two
    machines on one file system with working flock) use it to never write the same output.
    A no-op where ``fcntl`` is missing (Windows).
    """
    target = Path(target).absolute()
    if fcntl is None or target in _held:
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Busy(f"{target}: another process (pid {holder}) is {doing} it; it holds {lock}") from None
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held.add(target)
    try:
        yield
    finally:
        _held.discard(target)
        lock.unlink(missing_ok=True)  # before unlocking: a waiter that opened it sees it is stale
        os.close(fd)
