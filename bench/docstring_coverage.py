"""How many public functions of the core have a numpy-style ``Parameters`` section.

Walks ``app/atomlens/<pkg>`` for the packages analysis, nn, io, workflows (where present) and sim,
with :mod:`ast` only (nothing of AtomLens is imported, so torch, Qt or h5py need not be there).

What counts:

* public at module level: the names in the module's ``__all__`` where it has one (as a literal
  list or tuple), else every top-level ``def`` / ``class`` whose name does not start with ``_``;
  defs inside a top-level ``if`` / ``try`` (an optional dependency) count as top level; modules
  whose own name starts with ``_`` (other than ``__init__``) are private and skipped;
* the functions of those, and the methods of the public classes whose names do not start with
  ``_`` (so ``__init__`` and other dunders are not counted; properties are);
* documented: the docstring has a ``Parameters`` line followed by a line of dashes; a function
  whose only parameters are ``self`` / ``cls`` (or none) is documented by a ``Returns`` section or
  by any non-empty docstring (its summary paragraph is all there is to say).

Usage::

    python bench/docstring_coverage.py            # per package: documented/total
    python bench/docstring_coverage.py --list     # ... and the undocumented ones, file:line name
    python bench/docstring_coverage.py --list io  # only some packages
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "app" / "atomlens"
PACKAGES = ("analysis", "nn", "io", "workflows", "sim")

_SECTION = re.compile(r"^[ \t]*(?P<name>[A-Za-z][A-Za-z ]*?)[ \t]*\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)


def sections(doc: str | None) -> set[str]:
    """The numpy-style section names in a docstring (a title line over a line of dashes)."""
    return {m.group("name") for m in _SECTION.finditer(doc or "")}


def _module_all(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                return {str(n) for n in ast.literal_eval(node.value)}
            except ValueError:
                return None
    return None


def _top_level_defs(body):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node
        elif isinstance(node, ast.If):
            yield from _top_level_defs(node.body)
            yield from _top_level_defs(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _top_level_defs(part)


def _has_parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> bool:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if a.vararg:
        names.append(a.vararg.arg)
    if a.kwarg:
        names.append(a.kwarg.arg)
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if method and not is_static and names and names[0] in ("self", "cls"):
        names = names[1:]
    return bool(names)


def is_documented(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool = False) -> bool:
    """Whether ``fn``'s docstring documents it (see the module docstring for the rule)."""
    doc = ast.get_docstring(fn)
    found = sections(doc)
    if "Parameters" in found:
        return True
    if not _has_parameters(fn, method):
        return "Returns" in found or bool((doc or "").strip())
    return False


def module_functions(path: Path):
    """``(qualified name, line, documented)`` for each public function / method of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    public = _module_all(tree)
    for node in _top_level_defs(tree.body):
        if public is not None:
            if node.name not in public:
                continue
        elif node.name.startswith("_"):
            continue
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                    yield f"{node.name}.{item.name}", item.lineno, is_documented(item, method=True)
        else:
            yield node.name, node.lineno, is_documented(node)


def package_report(pkg: str):
    """``(documented, total, [(relpath, line, name), ...undocumented])`` for one package."""
    base = ROOT / pkg
    done = total = 0
    missing = []
    for path in sorted(base.rglob("*.py")):
        if path.stem.startswith("_") and path.stem != "__init__":
            continue
        for name, line, ok in module_functions(path):
            total += 1
            done += ok
            if not ok:
                missing.append((path.relative_to(ROOT.parent).as_posix(), line, name))
    return done, total, missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the undocumented functions")
    ap.add_argument("packages", nargs="*", help=f"packages to count (default: {', '.join(PACKAGES)})")
    args = ap.parse_args(argv)
    wanted = args.packages or [p for p in PACKAGES if (ROOT / p).is_dir()]
    unknown = [p for p in wanted if not (ROOT / p).is_dir()]
    if unknown:
        ap.error(f"no package {', '.join(unknown)} under {ROOT}")
    all_done = all_total = 0
    for pkg in wanted:
        done, total, missing = package_report(pkg)
        all_done += done
        all_total += total
        print(f"{pkg:10s} {done:4d}/{total:<4d}")
        if args.list:
            for rel, line, name in missing:
                print(f"    {rel}:{line}  {name}")
    if len(wanted) > 1:
        print(f"{'all':10s} {all_done:4d}/{all_total:<4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
