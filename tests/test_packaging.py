"""The package installs from a wheel with its resources, and setup.cfg lists every subpackage."""

from __future__ import annotations

import configparser
import subprocess
import sys
import venv

import pytest

from conftest import ROOT


def _declared_packages() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def test_setup_cfg_lists_every_subpackage():
    found = {
        ".".join(p.parent.relative_to(ROOT / "app").parts)
        for p in (ROOT / "app" / "atomlens").rglob("__init__.py")
    }
    found.add("atomlens.resources")
    assert found == _declared_packages()


@pytest.mark.slow
def test_wheel_installs_resources_into_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheels = list(dist.glob("atomlens-*.whl"))
    assert len(wheels) == 1
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    py = env / "bin" / "python"
    inst = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheels[0])],
        capture_output=True, text=True, timeout=300,
    )
    assert inst.returncode == 0, inst.stderr
    # run from tmp_path so that the source tree cannot be imported by accident
    probe = (
        "import atomlens, atomlens.samples as s; from pathlib import Path; "
        "p = s.sample_path('sto-haadf'); print(atomlens.__file__); print(p); "
        "print(p.stat().st_size); print(s.resource_path('samples', 'README.md').exists())"
    )
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    mod_file, sample, size, readme = out.stdout.split()
    assert str(env) in mod_file and str(ROOT) not in mod_file
    assert str(env) in sample and sample.endswith("SrTiO3_HAADF.emd")
    assert int(size) == (ROOT / "resources" / "samples" / "SrTiO3_HAADF.emd").stat().st_size
    assert readme == "True"
    # the console scripts are installed too
    assert (env / "bin" / "atomlens").exists() and (env / "bin" / "atomlens-gui").exists()
