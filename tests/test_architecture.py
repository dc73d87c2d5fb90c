"""The import graph of ``app/atomlens`` keeps to its layers (docs/ARCHITECTURE.md).

Every import is read from the source (also those inside functions, which run later but bind
the modules just the same): there is no circle, no arrow from a lower layer to a higher one
(io < sim < analysis < nn < workflows < cli and gui), no Qt below the GUI, no torch in io, sim
or analysis (pure numpy).  The checker is tested on a small package with known faults.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "app" / "atomlens"

#: Layer of each top-level part of the package (higher may import lower, never the reverse).
LAYERS = {"_version": 0, "fileio": 0, "progress": 0, "samples": 0, "io": 0, "sim": 1, "analysis": 2, "nn": 3,
          "workflows": 4, "cli": 5, "gui": 5, "__main__": 6}
#: The package itself (``import atomlens``: the notebook API) sits above everything.
ROOT_LAYER = 7
QT = ("PyQt5", "pyqtgraph", "qtpy", "PySide2", "PySide6")
NO_TORCH = ("io", "sim", "analysis", "_version", "fileio", "progress", "samples")


def module_name(pkg_dir: Path, path: Path) -> str:
    parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(pkg_dir: Path) -> tuple[dict, dict]:
    """({module: set of modules of the package it imports}, {module: set of other top-level
    packages it imports}).  ``from . import x`` is an arrow to the module ``x`` (not to the
    package) when ``x`` is one."""
    files = {module_name(pkg_dir, p): p for p in pkg_dir.rglob("*.py")}
    inner, outer = {}, {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        got, ext = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[:len(base) - (node.level - 1)]
                    src = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in files]
                targets = subs if len(subs) == len(node.names) else subs + [src]
            else:
                continue
            for t in targets:
                if t in files:
                    got.add(t)
                elif t.split(".")[0] == pkg_dir.name:  # a name inside a module: the module
                    while t and t not in files:
                        t = t.rpartition(".")[0]
                    if t:
                        got.add(t)
                else:
                    ext.add(t.split(".")[0])
        got.discard(mod)
        inner[mod], outer[mod] = got, ext
    return inner, outer


def layer(mod: str) -> int:
    parts = mod.split(".")
    return ROOT_LAYER if len(parts) == 1 else LAYERS.get(parts[1], -1)


def circles(graph: dict) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


#: What the two faces (cli, gui) may import: the workflow layer, the analysis types, each other
#: and the base utilities; never io, sim or nn directly.
FACE_MAY_IMPORT = ("workflows", "analysis", "gui", "cli", "_version", "fileio", "progress", "samples")


def problems(pkg_dir: Path) -> dict:
    inner, outer = import_graph(pkg_dir)
    unknown = sorted(m for m in inner if layer(m) < 0)
    upward = sorted((m, t) for m, ts in inner.items() for t in ts if layer(t) > layer(m) >= 0)
    qt = sorted((m, e) for m, es in outer.items() for e in es if e in QT and m.split(".")[1:2] != ["gui"])
    torch = sorted((m, "torch") for m, es in outer.items() if "torch" in es and m.split(".")[1:2] and
                   m.split(".")[1] in NO_TORCH)
    faces = sorted((m, t) for m, ts in inner.items() for t in ts if m.split(".")[1:2] in (["cli"], ["gui"])
                   and len(t.split(".")) > 1 and t.split(".")[1] not in FACE_MAY_IMPORT)
    return {"circles": circles(inner), "upward": upward, "qt": qt, "torch": torch, "unknown": unknown,
            "faces": faces}


def test_the_package_keeps_to_its_layers():
    found = problems(PKG)
    assert found["unknown"] == [], f"modules in no layer (add them to LAYERS): {found['unknown']}"
    assert found["circles"] == [], f"import circles: {found['circles']}"
    assert found["upward"] == [], f"imports from a lower layer to a higher one: {found['upward']}"
    assert found["qt"] == [], f"Qt below the GUI: {found['qt']}"
    assert found["torch"] == [], f"torch in a pure-numpy layer: {found['torch']}"
    assert found["faces"] == [], f"the CLI or the GUI past the workflow layer: {found['faces']}"


def _write(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / "atomlens" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "atomlens"


def test_the_checker_finds_circles_upward_arrows_qt_and_torch(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/reader.py": "def f():\n    from ..analysis import atoms  # upward, inside a function\n",
        "analysis/__init__.py": "",
        "analysis/atoms.py": "import torch\nfrom PyQt5 import QtCore\nfrom . import peaks\n",
        "analysis/peaks.py": "from .atoms import x\n",  # a circle with atoms
        "nn/__init__.py": "",
        "nn/infer.py": "from ..analysis.atoms import y\nfrom . import train\n",
        "nn/train.py": "import numpy\n",
        "gui/__init__.py": "",
        "gui/view.py": "from PyQt5 import QtWidgets\nfrom ..nn import infer\n",
        "workflows/__init__.py": "",
        "workflows/run.py": "from ..nn import infer\n",
        "gui/ok.py": "from ..workflows import run\nfrom ..analysis import atoms\n",
    })
    found = problems(pkg)
    assert found["circles"] == [["atomlens.analysis.atoms", "atomlens.analysis.peaks"]]
    assert found["upward"] == [("atomlens.io.reader", "atomlens.analysis.atoms")]
    assert found["qt"] == [("atomlens.analysis.atoms", "PyQt5")]
    assert found["torch"] == [("atomlens.analysis.atoms", "torch")]
    assert found["unknown"] == []
    assert found["faces"] == [("atomlens.gui.view", "atomlens.nn.infer")]


@pytest.mark.parametrize("source, arrow", [
    ("from . import train", "atomlens.nn.train"),           # a sibling module, not the package
    ("from .train import fit", "atomlens.nn.train"),        # a name in a module: the module
    ("import atomlens.nn.train as t", "atomlens.nn.train"),
    ("from .. import sim", "atomlens.sim"),                  # a package
])
def test_the_checker_resolves_relative_imports(tmp_path, source, arrow):
    pkg = _write(tmp_path, {"__init__.py": "", "sim/__init__.py": "", "nn/__init__.py": "",
                            "nn/train.py": "", "nn/infer.py": source + "\n"})
    inner, _ = import_graph(pkg)
    assert inner["atomlens.nn.infer"] == {arrow}


def test_layer_models_work_without_qt():
    """The GUI's layer models are plain Python with psygnal signals: built, changed and
    listened to without a QApplication (their views hold the Qt parts)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from atomlens.gui.layers import AtomsLayer, HeatmapLayer\n"
        "from atomlens.analysis.atoms import AtomList\n"
        "seen = []\n"
        "a = AtomsLayer(); a.changed.connect(lambda: seen.append('changed'))\n"
        "a.visibilityChanged.connect(seen.append)\n"
        "a.set_atoms(AtomList([1.0, 5.0], [2.0, 6.0], [1, 2], [0.9, 0.8])); a.set_visible(False)\n"
        "h = HeatmapLayer('cam', 'cam'); h.channelChanged.connect(seen.append)\n"
        "h.set_maps(np.ones((2, 4, 4), np.float32), ['a', 'b']); h.set_channel(1)\n"
        "assert seen == ['changed', False, 1], seen\n"
        "assert not [m for m in sys.modules if m.startswith(('PyQt5', 'pyqtgraph'))], 'Qt imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_svg_snapshot_is_headless(tmp_path):
    """The SVG snapshot needs no Qt: ``atomlens.workflows.snapshot`` writes it from numpy alone."""
    import subprocess
    import sys

    out = tmp_path / "snap.svg"
    code = (
        "import sys, numpy as np\n"
        "from atomlens.analysis.atoms import AtomList\n"
        "from atomlens.workflows.snapshot import SnapshotSpec, render_svg\n"
        "img = np.random.default_rng(0).random((20, 30)).astype(np.float32)\n"
        "spec = SnapshotSpec(img, atoms=AtomList([3.0, 9.0], [4.0, 12.0], [1, 2], [0.9, 0.8]), px_size_nm=0.02,"
        " scale=2)\n"
        f"render_svg(spec, {str(out)!r})\n"
        "assert not [m for m in sys.modules if m.startswith(('PyQt5', 'pyqtgraph'))], 'Qt imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.count("<circle") == 2 and 'width="60" height="40"' in text and "data:image/png;base64," in text
    assert 'class="scalebar"' in text
