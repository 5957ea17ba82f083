"""Code-quality facts of an installed package by static analysis (``ast``; nothing is imported).

``analyse(path)`` walks every ``.py`` file under a package folder and counts: modules, code lines
(non-blank, non-comment), size, public classes and functions (names without a leading underscore, in
modules whose path has no private component), docstring coverage (modules, public classes, public
functions and methods that have a docstring), type-hint coverage (annotated parameters other than
``self``/``cls`` and annotated returns of public functions and methods; ``__init__`` returns excluded),
test files shipped inside the package, hard-coded ``.cuda()`` calls and ``"cuda"`` literals, bare
``except:`` clauses, ``print`` calls and whether modules declare ``__all__``.

Run as a script it prints the JSON for one folder, so another environment (e.g. OpenOOD's) needs
only the standard library: ``python oodbench/benchmark/tools/quality.py /path/to/package``.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def _public(name: str) -> bool:
    return not name.startswith("_")


def _code_lines(src: str) -> int:
    return sum(1 for ln in src.splitlines() if ln.strip() and not ln.strip().startswith("#"))


def _func_hints(fn) -> tuple[int, int]:
    a = fn.args
    params = [p for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    params += [p for p in (a.vararg, a.kwarg) if p is not None]
    total = len(params) + (0 if fn.name == "__init__" else 1)
    have = sum(p.annotation is not None for p in params) + (0 if fn.name == "__init__" else fn.returns is not None)
    return have, total


def _documented(out: dict, kind: str, node) -> None:
    """Count a public class / function / method and whether it has a docstring."""
    out[kind] += 1
    out["docstring_items"] += 1
    out["docstrings"] += ast.get_docstring(node) is not None


def _hinted(out: dict, fn) -> None:
    h, t = _func_hints(fn)
    out["hints"] += h
    out["hint_slots"] += t


def _count_api(out: dict, tree) -> None:
    """Public classes, functions and methods of a module: docstrings and type hints."""
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _public(node.name):
            _documented(out, "public_classes", node)
            for m in node.body:
                if isinstance(m, funcs) and (_public(m.name) or m.name == "__init__"):
                    if m.name != "__init__":
                        _documented(out, "public_methods", m)
                    _hinted(out, m)
        elif isinstance(node, funcs) and _public(node.name):
            _documented(out, "public_functions", node)
            _hinted(out, node)


def analyse(path, name: str = "") -> dict:
    """The counts of the module docstring for the package folder ``path`` (reported under ``name``)."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    out = {"name": name or root.name, "path": str(root), "modules": 0, "code_lines": 0, "size_kb": 0.0,
           "public_classes": 0, "public_functions": 0, "public_methods": 0, "docstring_items": 0,
           "docstrings": 0, "hint_slots": 0, "hints": 0, "test_files_shipped": 0, "hardcoded_cuda_calls": 0,
           "cuda_string_literals": 0, "bare_excepts": 0, "print_calls": 0, "modules_with_all": 0,
           "syntax_errors": 0}
    total_bytes = 0
    for f in files:
        rel = f.relative_to(root)
        src = f.read_text(encoding="utf-8", errors="replace")
        total_bytes += f.stat().st_size
        out["modules"] += 1
        out["code_lines"] += _code_lines(src)
        if f.name.startswith("test_") or f.name.endswith("_test.py") or "tests" in rel.parts or "test" in rel.parts:
            out["test_files_shipped"] += 1
        try:
            tree = ast.parse(src)
        except SyntaxError:
            out["syntax_errors"] += 1
            continue
        private_mod = any(p.startswith("_") and p != "__init__.py" for p in rel.parts)
        if not private_mod:
            out["docstring_items"] += 1
            out["docstrings"] += ast.get_docstring(tree) is not None
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                if isinstance(fn, ast.Attribute) and fn.attr == "cuda":
                    out["hardcoded_cuda_calls"] += 1
                if isinstance(fn, ast.Name) and fn.id == "print":
                    out["print_calls"] += 1
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("cuda"):
                out["cuda_string_literals"] += 1
            elif isinstance(node, ast.ExceptHandler) and node.type is None:
                out["bare_excepts"] += 1
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                out["modules_with_all"] += 1
        if private_mod:
            continue
        _count_api(out, tree)
    out["size_kb"] = round(total_bytes / 1024, 1)
    out["docstring_coverage"] = round(out["docstrings"] / out["docstring_items"], 4) if out["docstring_items"] else None
    out["type_hint_coverage"] = round(out["hints"] / out["hint_slots"], 4) if out["hint_slots"] else None
    return out


if __name__ == "__main__":
    print(json.dumps(analyse(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""), sort_keys=True))
