"""Make docs/sim_gallery.png: real micrographs beside our simulations of the same materials,
then every structure, defect, imaging mode and dose level.

    python docs/make_gallery.py          (needs ../shared/data/real for the top row)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from atomlens.io import load
from atomlens.sim import simulate
from atomlens.sim.dataset import stretch_to_uint8

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
TILE = 220

# (title, config) for simulations; each uses the pixel size of the real image it mirrors
_SIM_MATCH = [
    ("sim: SrTiO3 HAADF 200 kV", {"structure": "SrTiO3", "px_size_A": 0.1225, "thickness": 20,
                                   "probe": {"kv": 200, "alpha_mrad": 24, "source_fwhm_A": 0.8},
                                   "noise": {"dose_e_per_A2": 8e3, "floor": 0.8, "jitter_px": 0.4, "background": 0.1, "blur_px": 0.8}}),
    ("sim: graphene + Si, 60 kV", {"structure": "graphene", "px_size_A": 0.078,
                                    "defects": {"dopant": {"element": "Si", "n": 1}},
                                    "probe": {"kv": 60, "alpha_mrad": 31, "source_fwhm_A": 0.7},
                                    "noise": {"dose_e_per_A2": 8e3, "floor": 0.3, "background": 0.1, "blur_px": 0.5}}),
    ("sim: graphene grain boundary", {"structure": "graphene", "px_size_A": 0.078,
                                       "defects": {"grain_boundary": {"prob": 1.0}},
                                       "probe": {"kv": 60, "alpha_mrad": 31, "source_fwhm_A": 0.7},
                                       "noise": {"dose_e_per_A2": 8e3, "floor": 0.3, "background": 0.1, "blur_px": 0.5}}),
    ("sim: SrTiO3 ADF", {"structure": "SrTiO3", "mode": "ADF", "px_size_A": 0.0933, "thickness": 20,
                         "probe": {"kv": 200, "alpha_mrad": 24, "source_fwhm_A": 0.7},
                         "noise": {"dose_e_per_A2": 3e5, "floor": 0.3, "jitter_px": 0.3, "blur_px": 1.2}}),
    ("sim: SrTiO3 ABF", {"structure": "SrTiO3", "mode": "ABF", "px_size_A": 0.0933, "thickness": 20,
                         "probe": {"kv": 200, "alpha_mrad": 24, "source_fwhm_A": 0.7},
                         "noise": {"dose_e_per_A2": 3e5, "jitter_px": 0.3, "blur_px": 1.2}}),
    ("sim: WSe2 STM -1.4 V", {"structure": "WSe2", "mode": "STM", "px_size_A": 0.098,
                               "stm": {"bias_V": -1.4, "orbital_fwhm_A": 1.6, "tip_radius_A": 6},
                               "defects": {"vacancy": {"rate": 0.01, "sites": "chalcogen"}},
                               "noise": {"sigma_A": 0.03, "line_offset_A": 0.08, "jitter_px": 1.0}}),
]
_REAL = [("real: SrTiO3 HAADF (Acquisition_18.emd)", "Acquisition_18.emd"),
         ("real: graphene + Si (G-Si-2nm.hdf5)", "G-Si-2nm.hdf5"),
         ("real: graphene GB (G-GrainBoundary-4nm)", "G-GrainBoundary-4nm.hdf5"),
         ("real: perovskite ADF (test_ADF_cropped)", "test_ADF_cropped.hdf5"),
         ("real: perovskite ABF (test_ABF_cropped)", "test_ABF_cropped.hdf5"),
         ("real: WSe2 STM (.jpg export)", "WSe2-SL445_211118_-1.4V_5x5_Z_021.jpg")]

_BASE = {"noise": {"dose_e_per_A2": 1e5, "jitter_px": 0.3, "background": 0.1}, "px_size_A": 0.1}
_CATALOGUE = [
    ("graphene, vacancies", {"structure": "graphene", "defects": {"vacancy": {"rate": 0.03}}}),
    ("graphene, Stone-Wales", {"structure": "graphene", "defects": {"stone_wales": {"n": 2}}}),
    ("graphene, hole + contamination", {"structure": "graphene", "defects": {"hole": {"prob": 1, "radius_A": 5}, "contamination": {"prob": 1, "n": 2}}}),
    ("graphene, edge + strain", {"structure": "graphene", "defects": {"edge": {"prob": 1}, "strain": {"amplitude_A": 0.2}}}),
    ("h-BN", {"structure": "hbn"}),
    ("MoS2, S2->S and S vacancies", {"structure": "MoS2", "defects": {"partial_vacancy": {"rate": 0.05, "sites": "chalcogen"}, "vacancy": {"rate": 0.02, "sites": "chalcogen"}}}),
    ("Mo(1-x)W(x)Se2, x = 0.1", {"structure": "MoSe2", "defects": {"alloy": {"element": "W", "fraction": 0.1, "sites": "metal"}}}),
    ("WS2 + adatoms", {"structure": "WS2", "defects": {"adatom": {"n": 3, "element": "Pt"}}}),
    ("SrTiO3 [001] 10 uc", {"structure": "SrTiO3", "thickness": 10, "probe": {"kv": 200, "alpha_mrad": 25}}),
    ("Au [110]", {"structure": "fcc", "structure_params": {"element": "Au", "zone": "110"}, "thickness": 10, "probe": {"kv": 200, "alpha_mrad": 25}}),
    ("Si [110] dumbbells", {"structure": "Si110", "px_size_A": 0.06, "thickness": 10, "probe": {"kv": 300, "alpha_mrad": 25}}),
    ("Pt atoms on amorphous C", {"structure": "single_atoms", "px_size_A": 0.12}),
    ("MoS2 ABF", {"structure": "MoS2", "mode": "ABF"}),
    ("MoS2 STM +1 V, W dopants", {"structure": "MoS2", "mode": "STM", "stm": {"bias_V": 1.0}, "defects": {"dopant": {"element": "W", "n": 3, "sites": "metal"}}}),
    ("MoS2 STM, double tip", {"structure": "MoS2", "mode": "STM", "stm": {"double_tip_prob": 1.0}}),
    ("graphene, dose 1e4 e/Å²", {"structure": "graphene", "noise": {"dose_e_per_A2": 1e4}}),
    ("graphene, dose 1e5 e/Å²", {"structure": "graphene", "noise": {"dose_e_per_A2": 1e5}}),
    ("graphene, dose 1e6 e/Å²", {"structure": "graphene", "noise": {"dose_e_per_A2": 1e6}}),
]


def _tile(img: np.ndarray, title: str) -> Image.Image:
    im = Image.fromarray(stretch_to_uint8(np.asarray(img, float))).resize((TILE, TILE), Image.BILINEAR).convert("RGB")
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, TILE, 14], fill=(0, 0, 0))
    d.text((3, 1), title[:40], fill=(255, 255, 0))
    return im


def _grid(tiles, cols):
    rows = -(-len(tiles) // cols)
    canvas = Image.new("RGB", (cols * (TILE + 4) + 4, rows * (TILE + 4) + 4), (255, 255, 255))
    for k, t in enumerate(tiles):
        canvas.paste(t, (4 + (k % cols) * (TILE + 4), 4 + (k // cols) * (TILE + 4)))
    return canvas


def main() -> int:
    warnings.simplefilter("ignore")
    tiles = []
    if REAL.is_dir():
        for (rt, fname), (st, cfg) in zip(_REAL, _SIM_MATCH):
            img = load(REAL / fname).frame(0)
            n = min(256, *img.shape)
            tiles.append(_tile(img[:n, :n], rt))
            tiles.append(_tile(simulate({**cfg, "shape": [n, n], "augment": {"rotation": True}}, 1).image, st))
    for title, cfg in _CATALOGUE:
        c = {**_BASE, **cfg, "shape": [256, 256]}
        c["noise"] = {**_BASE["noise"], **cfg.get("noise", {})}
        tiles.append(_tile(simulate(c, 3).image, title))
    out = ROOT / "docs" / "sim_gallery.png"
    _grid(tiles, 6).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
