"""The CPU record of benchmarks and the warning before emulated bfloat16 training, read from
/proc/cpuinfo-shaped files (an AVX2 EPYC, an AVX512-BF16 Xeon, an arm64 core, none)."""
from __future__ import annotations

import warnings

import pytest

from genrecsys import machine

AVX2 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu sse sse2 avx f16c avx2 fma\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu avx2 avx512_bf16\n")  # only the first processor is read
BF16 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: avx2 avx512f avx512_bf16 amx_tile\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("text, model, native", [(AVX2, "AMD EPYC", False), (BF16, "Intel(R) Xeon(R) Platinum", True),
                                                 (ARM, None, True)])
def test_cpu_model_and_bf16_kernels_come_from_the_first_processor(tmp_path, text, model, native):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert machine.cpu_summary(path) == {"cpu": model, "bf16_kernels": native}


def test_an_unreadable_cpuinfo_is_unknown_not_false(tmp_path):
    assert machine.cpu_summary(tmp_path / "missing") == {"cpu": None, "bf16_kernels": None}


@pytest.mark.parametrize("native, device, warned", [
    (False, "cpu", True), (True, "cpu", False), (None, "cpu", False), (False, "cuda", False), (False, "cuda:1", False)])
def test_a_warning_only_before_emulated_bf16_on_a_cpu(monkeypatch, native, device, warned):
    monkeypatch.setattr(machine, "bf16_kernels", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert machine.warn_emulated_bf16("llm.dtype bfloat16", device) is warned
    assert [str(w.message).split(":")[0] for w in caught] == (["llm.dtype bfloat16"] if warned else [])
