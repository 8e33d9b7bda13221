"""What this machine's CPU is and can do, read without importing torch.

Benchmarks record it (two "2-core" machines can differ 27x in a bfloat16 figure), and
training (``train.precision``) and the local LLM backend (``llm.dtype``) warn before they run
bfloat16 on a CPU that only emulates it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# x86 flags of native bfloat16 matrix instructions (oneDNN's bf16 kernels); arm64 names its "bf16"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _first_cpu(cpuinfo: Path) -> dict[str, str]:
    """The first processor's ``key: value`` lines of a /proc/cpuinfo ({} where unreadable)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The CPU's marketing name ("AMD EPYC", "Intel(R) Xeon(R) ..."), None where unknown."""
    return _first_cpu(cpuinfo).get("model name") or None


def bf16_kernels(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether the CPU has native bfloat16 matrix instructions: True / False where its flags
    say, None where they cannot be read (not Linux), so a caller warns only when it knows.

    Without them torch's CPU autocast converts and computes in float32 around every bfloat16
    op: measured 0.04x the float32 training throughput of llmsid on an AVX2 EPYC, 1.9x on
    one with AVX512-BF16 (BENCHMARKS.md)."""
    cpu = _first_cpu(cpuinfo)
    if "flags" in cpu:  # x86
        return any(flag in cpu["flags"].split() for flag in BF16_FLAGS)
    if "features" in cpu:  # arm64
        return "bf16" in cpu["features"].split()
    return None


def cpu_summary(cpuinfo: Path = CPUINFO) -> dict[str, object]:
    """``{"cpu": model name, "bf16_kernels": ...}`` for a benchmark's environment record."""
    return {"cpu": cpu_model(cpuinfo), "bf16_kernels": bf16_kernels(cpuinfo)}


def warn_emulated_bf16(what: str, device: object = "cpu") -> bool:
    """Warn, naming ``what`` ("train.precision bfloat16", "llm.dtype bfloat16"), when bfloat16
    work would run on a CPU known to lack bfloat16 instructions; True when it warned. It runs
    there, correctly, at a small fraction of float32's speed."""
    if str(device).split(":")[0] != "cpu" or bf16_kernels() is not False:
        return False
    warnings.warn(f"{what}: this CPU has no bfloat16 matrix instructions (no avx512_bf16 / amx_bf16), so torch "
                  "emulates them and this runs far slower than in float32 (llmsid training: 0.04x the float32 "
                  "tokens/s on an AVX2 EPYC); use float32 here", RuntimeWarning, stacklevel=3)
    return True
