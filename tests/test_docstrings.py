"""The core's public functions keep their numpy-style docstrings, and the examples in them run.

``bench/docstring_coverage.py`` counts the public functions of analysis, nn, io, workflows and sim
with a ``Parameters`` section (or, without parameters, a summary); every one must have it.  The
``Examples`` of those packages are doctests: each runs here.
"""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import docstring_coverage  # noqa: E402

PACKAGES = docstring_coverage.PACKAGES


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_public_function_has_a_numpy_docstring(pkg):
    done, total, missing = docstring_coverage.package_report(pkg)
    assert total > 0 and done == total and not missing, f"{pkg}: public functions without a Parameters section: {missing}"


def _modules(pkg):
    base = ROOT / "app" / "atomlens" / pkg
    for p in sorted(base.rglob("*.py")):
        parts = p.relative_to(base.parent.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_docstring_examples_run(pkg):
    failed, tried = [], 0
    for name in _modules(pkg):
        mod = importlib.import_module(name)
        r = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=False,
                            verbose=False)
        tried += r.attempted
        if r.failed:
            failed.append(f"{name}: {r.failed} of {r.attempted}")
    assert not failed, "doctest failures (run: python -m pytest --doctest-modules <file>): " + "; ".join(failed)
    assert tried > 0
