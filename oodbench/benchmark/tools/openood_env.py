"""Build, find and describe the optional OpenOOD environment (issue 13).

OpenOOD is not on PyPI and needs numpy < 2 (imgaug uses ``np.sctypes``), so its postprocessors run in
their own virtualenv. :func:`setup` builds it from the pins in ``openood-requirements.txt`` (beside this
module; every ``pip install`` gets that file as ``-c`` constraints, so even transitive dependencies
and torch resolve to the pinned versions), in the order docs/openood.md explains:

1. torch / torchvision first (local wheels; pip must never resolve a newer, multi-GB torch),
2. the numpy < 2 family, 3. Cython + diffdist, 4. libmr built ``--no-build-isolation`` (its isolated
build fails without Cython / numpy), 5. OpenOOD from a path or git URL (cloned into the venv at the
requested commit, installed ``--no-deps``: its setup.py asks for faiss-gpu, gdown, pre-commit; built
without isolation by the pinned poetry-core its pyproject.toml names),
6. oodbench's runtime dependencies (not oodbench itself: workers put the repository on PYTHONPATH),
7. pytest with ``--with-tests``, 8. ``import openood.postprocessors`` in the new interpreter.

It writes ``oodbench-env.json`` in the venv (source, commit, python, versions, time, size) and a log
of every step's output (``oodbench-setup.log``). A second call with the same pins and source only
checks the installed versions. :func:`find_python` tells the executor which interpreter to use.

    python -m oodbench.benchmark.tools.openood_env --source PATH_OR_URL [--commit C] [--venv DIR]
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
REQUIREMENTS = Path(__file__).with_name("openood-requirements.txt")
RECORD = "oodbench-env.json"
LOG = "oodbench-setup.log"
VALIDATED_COMMIT = "3c35632ee91b54b09d1f085d04f94744cece7d0b"  # the commit docs/openood.md measured
DEFAULT_SOURCE = "https://github.com/Jingkang50/OpenOOD"
# the command a user types (`python -m oodbench.benchmark.tools.openood_env` does the same)
CLI = "oodbench setup openood"

# install steps: (name, packages taken with their pins from REQUIREMENTS, extra pip options)
STEPS = [
    ("torch", ["torch", "torchvision"], []),
    ("numpy<2 family", ["numpy", "pandas", "opencv-python", "faiss-cpu", "statsmodels", "scikit-learn", "scipy",
                        "pyyaml", "json5", "imgaug", "tqdm", "matplotlib", "tabulate", "pillow"], []),
    ("Cython + diffdist", ["setuptools", "cython", "diffdist"], []),
    ("libmr", ["libmr"], ["--no-build-isolation"]),
    # OpenOOD goes here (step "openood")
    ("oodbench runtime deps", ["pytorch-ood", "torch", "torchvision", "numpy", "scipy", "scikit-learn",
                               "threadpoolctl", "pandas", "tabulate", "matplotlib", "tqdm", "pillow"], []),
]
TEST_STEP = ("pytest", ["pytest"], [])
BUILD_BACKENDS = ["poetry-core", "setuptools"]  # OpenOOD is built with these, without build isolation


class SetupError(RuntimeError):
    def __init__(self, step: str, message: str, tail: str = ""):
        self.step, self.tail = step, tail
        super().__init__(f"OpenOOD set-up failed at step '{step}': {message}"
                         + (f"\n--- last lines of its output ---\n{tail}" if tail else ""))


# ---- pins and locations ---------------------------------------------------------------------------
def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{canonical name: version} from a requirements file of ``name==version`` lines."""
    pins = {}
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if not m:
            raise ValueError(f"{path}:{n}: not a 'name==version' pin: {raw!r}")
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_venv() -> Path:
    """``$OODBENCH_OPENOOD_VENV``, else ``<cache>/envs/openood`` (cache: ``$OODBENCH_CACHE`` or ~/.cache/oodbench)."""
    if os.environ.get("OODBENCH_OPENOOD_VENV"):
        return Path(os.environ["OODBENCH_OPENOOD_VENV"]).expanduser().absolute()
    cache = Path(os.environ.get("OODBENCH_CACHE") or Path.home() / ".cache" / "oodbench").expanduser()
    return (cache / "envs" / "openood").absolute()


def legacy_venv() -> Path:
    return REPO.parent / "openood-venv"


def _bin(venv: Path) -> Path:
    return Path(venv) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def read_record(venv: Path) -> dict | None:
    try:
        return json.loads((Path(venv) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def setup_command() -> str:
    return f"{CLI} --source {DEFAULT_SOURCE} --commit {VALIDATED_COMMIT[:7]}"


# ---- finding the interpreter ----------------------------------------------------------------------
def _imports_openood(python: Path) -> bool:
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('openood') is None)"
    try:
        return subprocess.run([str(python), "-c", code], env=_clean_env(), capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _check(python: Path) -> tuple[bool, str]:
    """Cheap: the venv has our record file; else (hand-built venv) the interpreter finds ``openood``."""
    if not python.exists():
        return False, f"{python} does not exist"
    ok = (python.parent.parent / RECORD).exists() or _imports_openood(python)
    return ok, "" if ok else f"{python} has no {RECORD} and cannot import openood"


def _locate(explicit=None) -> tuple[Path | None, str, str]:
    """(python or None, how it was found, why not). An explicit path or $OODBENCH_OPENOOD_PYTHON is
    authoritative: when it is unusable the answer is None, not some other environment."""
    for how, given in (("explicit", explicit), ("$OODBENCH_OPENOOD_PYTHON", os.environ.get("OODBENCH_OPENOOD_PYTHON"))):
        if given:
            py = Path(given).expanduser().absolute()  # not resolve(): a venv's python is a symlink
            ok, why = _check(py)
            return (py, how, "") if ok else (None, how, f"{how} python: {why}")
    reasons = []
    for how, venv in (("default venv", default_venv()), ("legacy ../openood-venv", legacy_venv())):
        py = _bin(venv)
        if py.exists():
            ok, why = _check(py)
            if ok:
                return py, how, ""
            reasons.append(why)
    return None, "", "; ".join(reasons) or f"no OpenOOD environment at {default_venv()}"


def find_python(explicit=None) -> Path | None:
    """The python of the OpenOOD environment: ``explicit``, else ``$OODBENCH_OPENOOD_PYTHON``, else the
    default venv, else ``../openood-venv`` (legacy, hand-built). None when there is none."""
    return _locate(explicit)[0]


def status(explicit=None) -> dict:
    """For ``oodbench list`` and skipped rows: available or not, why, and the command that sets it up."""
    py, how, why = _locate(explicit)
    out = {"available": py is not None, "python": str(py) if py else None, "found_by": how or None,
           "reason": "" if py else f"OpenOOD environment not found ({why})", "command": setup_command()}
    rec = read_record(py.parent.parent) if py else None
    if rec:
        out["openood_commit"] = rec.get("openood", {}).get("commit")
        out["built"] = rec.get("created")
    return out


# ---- building it ----------------------------------------------------------------------------------
def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _is_url(source: str) -> bool:
    return "://" in source or bool(re.match(r"^[\w.-]+@[\w.-]+:", source))


def _run(step: str, cmd: list, log, cwd=None) -> str:
    """Run one command, its output appended to the log; raise SetupError with the tail on failure."""
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    tail = collections.deque(maxlen=40)
    try:
        p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=_clean_env(), cwd=cwd)
    except OSError as e:
        raise SetupError(step, f"cannot run {cmd[0]}: {e}") from e
    for line in p.stdout:
        log.write(line)
        tail.append(line.rstrip("\n"))
    rc = p.wait()
    log.flush()
    if rc != 0:
        raise SetupError(step, f"`{' '.join(map(str, cmd))}` exited with {rc}", "\n".join(tail))
    return "\n".join(tail)


def _git_head(repo: Path, rev: str = "HEAD") -> str | None:
    r = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def _source_spec(source: str, commit: str | None) -> tuple[str, str | None, bool]:
    """(normalised source, wanted commit or None, is a git repository)."""
    if _is_url(source):
        return source, commit, True
    path = Path(source).expanduser().resolve()
    if not path.is_dir():
        raise SetupError("openood", f"OpenOOD source {source} is neither a folder nor a git URL")
    if _git_head(path):
        full = _git_head(path, commit or "HEAD")
        if full is None:
            raise SetupError("openood", f"commit {commit} not found in {path}")
        return str(path), full, True
    if commit:
        raise SetupError("openood", f"--commit given but {path} is not a git repository")
    return str(path), None, False


def _install_openood(python: Path, venv: Path, source: str, commit: str | None, is_git: bool, log,
                     pins: dict) -> tuple[str, str | None]:
    """Clone the source into <venv>/src/openood at the commit and install it --no-deps (editable), built
    without isolation by the pinned backends (its pyproject.toml names poetry-core; setup.py, setuptools)."""
    _run("openood", [python, "-m", "pip", "install", "-c", REQUIREMENTS,
                     *[f"{p}=={pins[p]}" for p in BUILD_BACKENDS]], log)
    if not is_git:  # a plain folder: installed as a copy, commit unknown
        _run("openood", [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", source], log)
        return source, None
    dst = venv / "src" / "openood"
    head = _git_head(dst) if (dst / ".git").exists() else None
    if head is None or (commit and not head.startswith(commit)):
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        _run("openood", ["git", "clone", "--quiet", source, dst], log)
        if commit:
            _run("openood", ["git", "-C", dst, "checkout", "--quiet", "--detach", commit], log)
        head = _git_head(dst)
    _run("openood", [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", dst], log)
    return str(dst), head


def _installed(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=_clean_env(), timeout=120)
    if r.returncode != 0:
        raise SetupError("check", "cannot list the installed packages", r.stderr[-2000:])
    return dict(sorted(json.loads(r.stdout.strip().splitlines()[-1]).items(), key=lambda kv: kv[0].lower()))


def _mismatches(installed: dict, pins: dict) -> list[str]:
    have = {canonical(k): v for k, v in installed.items()}
    return [f"{n} {have[n]} != {v}" for n, v in pins.items() if n in have and have[n] != v]


def disk_usage(path: Path) -> int:
    """Bytes on disk under path (like ``du``: allocated blocks, hard links counted once)."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for st in (os.lstat(os.path.join(root, name)) for name in dirs + files):
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def _up_to_date(rec: dict | None, source, commit, with_tests) -> bool:
    """The record says: same pins file, same OpenOOD source and commit, pytest if asked for."""
    oo = (rec or {}).get("openood", {})
    return bool(rec) and rec.get("requirements", {}).get("sha256") == _sha256(REQUIREMENTS) \
        and (rec.get("with_tests") or not with_tests) and oo.get("source") == source \
        and (commit is None or (oo.get("commit") or "").startswith(commit))


def setup(source: str | None, venv=None, commit: str | None = None, progress: bool = True,
          with_tests: bool = False, force: bool = False, python: str | None = None) -> dict:
    """Build (or check) the OpenOOD environment; returns its record. Raises SetupError naming the step."""
    venv = Path(venv).expanduser().absolute() if venv else default_venv()
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    pins, rec = read_pins(), read_record(venv)
    missing = [p for _, pkgs, _ in STEPS + [TEST_STEP] for p in pkgs + BUILD_BACKENDS if canonical(p) not in pins]
    if missing:
        raise SetupError("pins", f"{REQUIREMENTS} has no pin for {', '.join(sorted(set(missing)))}")
    if source is None:
        if not rec:
            raise SetupError("arguments", f"no environment at {venv} yet: give --source (a path to an OpenOOD "
                                          f"checkout or a git URL, e.g. {DEFAULT_SOURCE})")
        source, commit = rec["openood"]["source"], commit or rec["openood"].get("commit")
    source, commit, is_git = _source_spec(source, commit)
    if force and venv.exists():
        say(f"removing {venv}")
        shutil.rmtree(venv)
    py = _bin(venv)
    if py.exists() and _up_to_date(rec, source, commit, with_tests):
        bad = _mismatches(_installed(py), pins)
        if not bad:
            say(f"OpenOOD environment at {venv} is up to date (OpenOOD {str(rec['openood'].get('commit'))[:12]})")
            return {**rec, "up_to_date": True}
        say("installed versions differ from the pins (" + ", ".join(bad[:5]) + "): re-installing")

    t0, times = time.time(), {}
    venv.mkdir(parents=True, exist_ok=True)
    (venv / RECORD).unlink(missing_ok=True)  # an interrupted build must not look finished
    steps = STEPS[:4] + [("openood", None, None)] + STEPS[4:] + ([TEST_STEP] if with_tests else [])
    total = len(steps) + 2
    with open(venv / LOG, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} setup of {venv} from {source} {commit or ''}\n")
        t = time.time()
        say(f"[1/{total}] virtualenv {venv}")
        if not py.exists():
            _run("venv", [python or sys.executable, "-m", "venv", venv], log)
        times["venv"] = round(time.time() - t, 1)
        installed_from = None
        for i, (name, pkgs, opts) in enumerate(steps, 2):
            t = time.time()
            say(f"[{i}/{total}] {name}")
            if pkgs is None:
                installed_from, commit = _install_openood(py, venv, source, commit, is_git, log, pins)
            else:
                _run(name, [py, "-m", "pip", "install", "-c", REQUIREMENTS, *opts,
                            *[f"{p}=={pins[canonical(p)]}" for p in pkgs]], log)
            times[name] = round(time.time() - t, 1)
            say(f"      {times[name]:.0f} s")
        t = time.time()
        say(f"[{total}/{total}] verify: import openood.postprocessors")
        _run("verify", [py, "-c", "import openood, openood.postprocessors; print('openood from', openood.__file__)"],
             log, cwd=venv)
        times["verify"] = round(time.time() - t, 1)
    if commit and not commit.startswith(VALIDATED_COMMIT[:7]):
        say(f"note: OpenOOD {commit[:12]} is not the commit the adapter was validated on ({VALIDATED_COMMIT[:7]})")
    installed = _installed(py)
    bad = _mismatches(installed, pins)
    if bad:
        raise SetupError("check", "installed versions differ from the pins: " + ", ".join(bad))
    version, size = subprocess.run([str(py), "-V"], capture_output=True, text=True).stdout.split()[-1], disk_usage(venv)
    rec = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "openood": {"source": source, "commit": commit, "installed_from": installed_from,
                       "validated_commit": VALIDATED_COMMIT},
           "python": {"executable": str(py), "version": version, "platform": platform.platform()},
           "requirements": {"file": REQUIREMENTS.name, "sha256": _sha256(REQUIREMENTS)}, "with_tests": with_tests,
           "packages": installed, "steps_s": times, "seconds": round(time.time() - t0, 1),
           "size_bytes": size, "size": f"{size / 2 ** 30:.2f} GiB"}
    (venv / RECORD).write_text(json.dumps(rec, indent=1) + "\n")
    say(f"OpenOOD environment ready in {rec['seconds']:.0f} s, {rec['size']}: {py}")
    return rec


# ---- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--source", default=None,
                        help=f"OpenOOD source: a local checkout or a git URL (e.g. {DEFAULT_SOURCE}); "
                             "may be left out to repair or re-check an existing environment")
    parser.add_argument("--commit", default=None,
                        help=f"OpenOOD commit to check out (default the source's HEAD; the adapter was validated "
                             f"on {VALIDATED_COMMIT[:7]})")
    parser.add_argument("--venv", default=None,
                        help="where to build it (default $OODBENCH_OPENOOD_VENV, else <cache>/envs/openood with "
                             "<cache> = $OODBENCH_CACHE or ~/.cache/oodbench)")
    parser.add_argument("--with-tests", action="store_true", help="also install pytest (to run tests/test_openood.py)")
    parser.add_argument("--force", action="store_true", help="delete the environment and build it again")
    parser.add_argument("--python", default=None, help="interpreter to create the venv with (default this one)")
    parser.add_argument("--status", action="store_true", help="only say whether an environment is found (JSON)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.status:
        st = status()
        print(json.dumps(st, indent=1))
        return 0 if st["available"] else 1
    try:
        rec = setup(args.source, venv=args.venv, commit=args.commit, progress=not args.quiet,
                    with_tests=args.with_tests, force=args.force, python=args.python)
    except SetupError as e:
        print(str(e), file=sys.stderr)
        return 1
    py = rec["python"]["executable"]
    print(py)
    if Path(py).parent.parent != default_venv():
        print(f"(not the default location: export OODBENCH_OPENOOD_PYTHON={py})", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=CLI, description="Build the OpenOOD environment from pinned versions.")
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
