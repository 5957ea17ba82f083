"""Integration effort in lines of code: non-blank, non-comment, non-docstring lines of our adapter modules
for a library and, per detector, of its class or registration statement."""
from __future__ import annotations

import ast
from pathlib import Path

from oodbench.benchmark.tools.ease.environments import REPO


def _strip_docstrings(tree) -> set:
    """Line numbers covered by docstrings."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            b = getattr(node, "body", [])
            if b and isinstance(b[0], ast.Expr) and isinstance(getattr(b[0], "value", None), ast.Constant) \
                    and isinstance(b[0].value.value, str):
                lines.update(range(b[0].lineno, b[0].end_lineno + 1))
    return lines


def code_lines(src: str, start: int = 1, end: int | None = None) -> int:
    """Non-blank, non-comment, non-docstring lines of ``src`` (1-based inclusive range)."""
    tree = ast.parse(src)
    doc = _strip_docstrings(tree)
    lines = src.splitlines()
    end = end or len(lines)
    return sum(1 for i in range(start, end + 1) if i not in doc and lines[i - 1].strip()
               and not lines[i - 1].strip().startswith("#"))


def detector_lines(cls, short: str) -> int | None:
    """Lines of the detector's own code in its adapter module: its class statement when defined there
    by name, else the statement that registers / defines it (found by its registered short name)."""
    import inspect

    try:
        path = inspect.getsourcefile(cls)
        src = Path(path).read_text()
    except (TypeError, OSError):
        return None
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return code_lines(src, node.lineno, node.end_lineno)
    names = {short, cls.name}
    for node in tree.body:
        for sub in ast.walk(node):  # an entry of a table: {"msp": dict(...), ...}
            if isinstance(sub, ast.Dict):
                for k, v in zip(sub.keys, sub.values):
                    if isinstance(k, ast.Constant) and k.value in names:
                        return code_lines(src, k.lineno, v.end_lineno)
        best = None
        for sub in ast.walk(node):  # the smallest call / tuple naming it: _define("msp", ...)
            if isinstance(sub, (ast.Call, ast.Tuple, ast.List)) and any(
                    isinstance(c, ast.Constant) and c.value in names for c in ast.walk(sub)):
                if best is None or (sub.end_lineno - sub.lineno) < (best.end_lineno - best.lineno):
                    best = sub
        if best is not None:
            return code_lines(src, best.lineno, best.end_lineno)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in names:
                return code_lines(src, node.lineno, node.end_lineno)
    return None


def adapter_lines(modules) -> int:
    total = 0
    for m in sorted(set(modules)):
        p = REPO / (m.replace(".", "/") + ".py")
        if p.exists():
            total += code_lines(p.read_text())
    return total
