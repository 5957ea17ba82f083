"""The OpenOOD environment tool without building anything and without network: where the interpreter
is looked for and in which order, what status() says when there is none, the command-line arguments,
and the pins file."""
import argparse
import json
import sys
from pathlib import Path

import pytest

from oodbench.benchmark.tools import openood_env as oe


def _fake_venv(root: Path, record: bool = True) -> Path:
    """A folder shaped like a venv whose bin/python is this interpreter (a symlink, as in a real venv)."""
    py = oe._bin(root)
    py.parent.mkdir(parents=True)
    py.symlink_to(sys.executable)
    if record:
        (root / oe.RECORD).write_text(json.dumps({"openood": {"commit": oe.VALIDATED_COMMIT}, "created": "x"}))
    return py


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No OpenOOD variables, the cache in tmp_path, no legacy venv, no real openood import."""
    for var in ("OODBENCH_OPENOOD_PYTHON", "OODBENCH_OPENOOD_VENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OODBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(oe, "legacy_venv", lambda: tmp_path / "legacy")
    monkeypatch.setattr(oe, "_imports_openood", lambda py: False)
    return tmp_path


def test_default_venv_location(clean, monkeypatch):
    assert oe.default_venv() == clean / "cache" / "envs" / "openood"
    monkeypatch.setenv("OODBENCH_OPENOOD_VENV", str(clean / "elsewhere"))
    assert oe.default_venv() == clean / "elsewhere"


def test_status_when_absent_gives_reason_and_command(clean):
    assert oe.find_python() is None
    st = oe.status()
    assert st["available"] is False and st["python"] is None
    assert str(oe.default_venv()) in st["reason"]
    assert st["command"].startswith(oe.CLI) and "--source" in st["command"]
    assert oe.VALIDATED_COMMIT[:7] in st["command"]
    assert not (clean / "cache").exists()  # looking creates nothing


def test_resolution_order(clean, monkeypatch):
    legacy = _fake_venv(clean / "legacy", record=False)
    assert oe.find_python() is None  # no record and (here) no openood: not usable
    monkeypatch.setattr(oe, "_imports_openood", lambda py: py == legacy)
    assert oe.find_python() == legacy and oe.status()["found_by"].startswith("legacy")

    default = _fake_venv(oe.default_venv())
    assert oe.find_python() == default  # default venv (record file) before legacy
    st = oe.status()
    assert st["available"] and st["found_by"] == "default venv" and st["openood_commit"] == oe.VALIDATED_COMMIT

    env = _fake_venv(clean / "from-env")
    monkeypatch.setenv("OODBENCH_OPENOOD_PYTHON", str(env))
    assert oe.find_python() == env  # the variable before the default venv
    explicit = _fake_venv(clean / "explicit")
    assert oe.find_python(explicit) == explicit  # an explicit path before everything
    assert oe.find_python(str(explicit)) == explicit
    assert env.is_symlink() and oe.find_python() == env  # the symlink is kept, not resolved


def test_explicit_or_variable_is_authoritative(clean, monkeypatch):
    _fake_venv(oe.default_venv())
    monkeypatch.setenv("OODBENCH_OPENOOD_PYTHON", str(clean / "missing" / "bin" / "python"))
    assert oe.find_python() is None
    st = oe.status()
    assert not st["available"] and "OODBENCH_OPENOOD_PYTHON" in st["reason"] and "does not exist" in st["reason"]
    no_record = _fake_venv(clean / "bare", record=False)
    assert oe.find_python(no_record) is None  # neither a record nor an importable openood


def test_arguments():
    p = oe.add_arguments(argparse.ArgumentParser())
    a = p.parse_args(["--source", "/src/OpenOOD", "--commit", "3c35632", "--venv", "/tmp/v", "--with-tests"])
    assert (a.source, a.commit, a.venv, a.with_tests, a.force, a.status) == \
        ("/src/OpenOOD", "3c35632", "/tmp/v", True, False, False)
    a = p.parse_args([])
    assert a.source is None and a.venv is None and not a.quiet
    assert callable(oe.run) and callable(oe.main)


def test_status_flag_and_missing_source(clean, capsys):
    assert oe.main(["--status"]) == 1
    assert json.loads(capsys.readouterr().out)["available"] is False
    # nothing built yet and no --source: fails before creating anything, naming the step
    assert oe.main(["--venv", str(clean / "v"), "-q"]) == 1
    assert "--source" in capsys.readouterr().err and not (clean / "v").exists()
    with pytest.raises(oe.SetupError, match="neither a folder nor a git URL"):
        oe.setup(str(clean / "nowhere"), venv=clean / "v", progress=False)


def test_requirements_pin_torch_numpy_and_every_step():
    pins = oe.read_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["numpy"].startswith("1.")  # OpenOOD's imgaug needs numpy < 2
    assert pins["pytorch-ood"] == "0.4.0"
    assert all(oe.canonical(p) in pins for p in oe.BUILD_BACKENDS)
    for _, pkgs, _ in oe.STEPS + [oe.TEST_STEP]:
        assert all(oe.canonical(p) in pins for p in pkgs), pkgs
    assert "openood" not in pins and "oodbench" not in pins


def test_read_pins_rejects_unpinned(tmp_path):
    f = tmp_path / "r.txt"
    f.write_text("# comment\nNumPy==1.26.4  # why\n\nfoo_bar.baz == 2\n")
    assert oe.read_pins(f) == {"numpy": "1.26.4", "foo-bar-baz": "2"}
    f.write_text("torch>=2\n")
    with pytest.raises(ValueError, match="not a 'name==version' pin"):
        oe.read_pins(f)


def test_runtime_step_covers_pyproject_dependencies():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((oe.REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {oe.canonical(d.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip())
             for d in deps if "python_version<" not in d.replace(" ", "")}  # backports: not for its Python 3.11
    runtime = {oe.canonical(p) for name, pkgs, _ in oe.STEPS if name == "oodbench runtime deps" for p in pkgs}
    assert names <= runtime


def test_failed_step_names_itself_and_shows_its_output(tmp_path):
    with open(tmp_path / "log", "w") as log, pytest.raises(oe.SetupError) as e:
        oe._run("libmr", [sys.executable, "-c", "print('You must have Cython'); raise SystemExit(3)"], log)
    assert e.value.step == "libmr" and "exited with 3" in str(e.value) and "You must have Cython" in e.value.tail
    assert "You must have Cython" in (tmp_path / "log").read_text()


def test_second_call_only_checks(tmp_path, monkeypatch):
    """A venv whose record matches the pins and the source returns at once, without running pip."""
    src = tmp_path / "OpenOOD"
    src.mkdir()
    venv = tmp_path / "v"
    _fake_venv(venv, record=False)
    rec = {"openood": {"source": str(src.resolve()), "commit": None},
           "requirements": {"sha256": oe._sha256(oe.REQUIREMENTS)}, "with_tests": False}
    (venv / oe.RECORD).write_text(json.dumps(rec))
    monkeypatch.setattr(oe, "_installed", lambda py: dict(oe.read_pins()))
    monkeypatch.setattr(oe, "_run", lambda *a, **k: pytest.fail(f"ran {a[1]}"))
    out = oe.setup(str(src), venv=venv, progress=False)
    assert out["up_to_date"] and out["openood"] == rec["openood"]
    assert oe.setup(None, venv=venv, progress=False)["up_to_date"]  # the source comes from the record
