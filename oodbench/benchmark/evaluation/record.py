"""Facts about the environment that made a run: package versions, the git commit, the device."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

PACKAGES = ("oodbench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas", "pytorch-ood", "openood")


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    """The repository's HEAD commit, with ``-dirty`` when tracked files outside ``results/`` are modified ("" outside
    git). The results folders are the runs' own outputs (a run rewrites its committed folder as it goes),
    so they do not make the code that produced them dirty."""
    try:
        here = Path(__file__).resolve().parents[3]
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "") if r.returncode == 0 else ""
    except Exception:
        return ""


def device_name(device) -> str:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()
