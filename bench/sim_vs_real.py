"""Real against simulated micrographs, side by side, by their statistics (issue 24).

For three kinds of HAADF image (single Pt atoms on thick amorphous carbon, graphene, SrTiO3)
a real file from ../shared/data is compared with an image that the simulator makes with the
real-image keys (thick support with vacuum, probe tails, backgrounds, low dose...) at the
same pixel size: the image, its radially averaged power spectrum (of the z-scored image, in
1/Å), the histogram of the z-scored intensities and two noise figures:

* ``noise/contrast``: std of the difference of horizontally adjacent pixels / sqrt(2),
  over the 1-99 % intensity range (white noise shows here, smooth structure does not);
* ``hf power``: the fraction of the (z-scored) image's power above 0.6 of Nyquist.

For the Pt images also ``atom/speckle``: how far a Pt atom stands above the carbon around
it (peak of the image smoothed by 1 px, minus the median of a ring 6-10 px out), over the
std of the smoothed image in that ring (the carbon speckle plus noise), at the hand labels
of the real image and at the true positions of the simulated one; and the blob's FWHM (px).

    python bench/sim_vs_real.py [--out docs/sim_vs_real.png] [--seed 0] [--pt-all]

``--pt-all`` also prints the figures of all 11 real Pt images and of 11 simulated ones
(seeds 0-10), as ranges.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))
REAL = ROOT.parent / "shared" / "data" / "real"
PT = ROOT.parent / "shared" / "data" / "real-labelled" / "pt-on-carbon"

#: Simulation settings matched to each real file (pixel size from the file).  The Pt one is
#: the "Pt on thick carbon" variant of the report; the others are plausible single settings.
PT_SIM = {
    "structure": "single_atoms",
    "structure_params": {"element": "Pt", "n_atoms": [30, 60], "n_clusters": 0,
                         "support_layers": [30, 80], "support_density": 0.38,
                         "support_thickness_var": [0.3, 0.5], "support_roughness": [0.15, 0.3],
                         "support_roughness_scale_A": [3, 6], "vacuum_prob": 1.0},
    "mode": "HAADF", "z_exponent": [1.6, 1.8],
    "probe": {"kv": 300, "alpha_mrad": 20, "defocus_A": [0, 20], "source_fwhm_A": [2.0, 2.6]},
    "augment": {"rotation": False, "shift": False, "jiggle_A": 0.0},
    "noise": {"dose_e_per_A2": [1e4, 2e4], "collection": 0.05, "floor": [0.0, 0.03], "probe_tail": [0.2, 0.4],
              "probe_tail_sigma_A": [4, 8], "thickness_var": [0.05, 0.1], "ramp": [0.0, 0.3],
              "jitter_px": [0.0, 0.3], "streaks": 0.3},
}
GRAPHENE_SIM = {
    "structure": "graphene", "defects": {"dopant": {"element": "Si", "n": 1}},
    "mode": "HAADF", "z_exponent": 1.7,
    "probe": {"kv": 60, "alpha_mrad": 30, "defocus_A": [0, 10], "source_fwhm_A": [0.7, 0.9]},
    "augment": {"rotation": True, "shift": True, "jiggle_A": 0.03},
    "noise": {"dose_e_per_A2": [1.5e4, 3e4], "floor": [0.1, 0.2], "probe_tail": [0.1, 0.2],
              "probe_tail_sigma_A": [3, 5], "bowl": [0.1, 0.3], "jitter_px": [0.2, 0.5], "streaks": 0.3},
}
STO_SIM = {
    "structure": "SrTiO3", "thickness": [15, 25],
    "mode": "HAADF", "z_exponent": 1.7,
    "probe": {"kv": 300, "alpha_mrad": 22, "defocus_A": [0, 20], "source_fwhm_A": [1.2, 1.4]},
    "augment": {"rotation": False, "shift": True, "jiggle_A": 0.02, "drift_A": 0.5},
    "noise": {"dose_e_per_A2": [3e6, 5e6], "collection": 0.05, "floor": [1.5, 2.5], "probe_tail": [0.2, 0.3],
              "probe_tail_sigma_A": [3, 6], "ramp": [0.1, 0.3], "thickness_var": 0.03, "jitter_px": [0.2, 0.4],
              "streaks": 0.5},
}


def _load(path):
    from atomlens.io import load

    mg = load(path)
    return np.asarray(mg.frame(0), np.float64), float(mg.px_size_nm) * 10.0


def real_images():
    """(name, image, px_size_A, labels_px or None, sim config) for the three kinds."""
    out = []
    img, px = _load(next(PT.glob("021_*.tif")))
    lab = np.loadtxt(PT / "021_Results.csv", delimiter=",", skiprows=1)[:, 1:3]
    out.append(("Pt on a-C (021)", img, px, lab, PT_SIM))
    img, px = _load(REAL / "G-Si-2nm.hdf5")
    out.append(("graphene (G-Si-2nm)", img, px, None, GRAPHENE_SIM))
    img, px = _load(REAL / "16_STOimage_1.ser")
    out.append(("SrTiO3 (16_STOimage_1)", img[:512, :512], px, None, STO_SIM))
    return out


def zscore(img):
    return (img - img.mean()) / (img.std() or 1.0)


def radial_power(img, px_A, nbins=60):
    """(k in 1/Å, mean power) of the z-scored, Hann-windowed image."""
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.abs(np.fft.fftshift(np.fft.fft2(zscore(img) * win))) ** 2 / (h * w)
    ky = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    kx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    k = np.hypot(ky, kx)
    bins = np.linspace(0, 0.5, nbins + 1)
    idx = np.digitize(k.ravel(), bins)
    p = np.bincount(idx, f.ravel(), nbins + 2)[1:nbins + 1] / np.maximum(np.bincount(idx, None, nbins + 2)[1:nbins + 1], 1)
    return 0.5 * (bins[1:] + bins[:-1]) / px_A, p


def noise_figures(img):
    lo, hi = np.percentile(img, (1, 99))
    d = np.diff(img, axis=1)
    nc = float(d.std() / np.sqrt(2) / max(hi - lo, 1e-12))
    f = np.abs(np.fft.fft2(zscore(img))) ** 2
    k = np.hypot(np.fft.fftfreq(img.shape[0])[:, None], np.fft.fftfreq(img.shape[1])[None, :])
    f[0, 0] = 0
    hf = float(f[k > 0.3].sum() / f.sum())
    return nc, hf


def atom_contrast(img, pts_px):
    """(median atom/speckle, median FWHM in px) at the points (x, y in px), see module doc."""
    sm = ndimage.gaussian_filter(img, 1.0)
    h, w = img.shape
    yy, xx = np.mgrid[-12:13, -12:13]
    r = np.hypot(yy, xx)
    ring = (r >= 6) & (r <= 10)
    ratios, fwhm = [], []
    for x, y in np.asarray(pts_px):
        ix, iy = int(round(x)), int(round(y))
        if not (12 <= ix < w - 12 and 12 <= iy < h - 12):
            continue
        patch = sm[iy - 12:iy + 13, ix - 12:ix + 13]
        bg = np.median(patch[ring])
        sd = patch[ring].std() or 1.0
        peak = patch[10:15, 10:15].max()
        ratios.append((peak - bg) / sd)
        # FWHM from the radial profile of the smoothed image (1 px: both get the same)
        prof = np.array([patch[(r >= a - 0.5) & (r < a + 0.5)].mean()
                         for a in range(0, 11)])
        half = bg + 0.5 * (prof[0] - bg)
        below = np.nonzero(prof < half)[0]
        if len(below) and prof[0] > bg:
            fwhm.append(2.0 * below[0])
    return (float(np.median(ratios)) if ratios else float("nan"),
            float(np.median(fwhm)) if fwhm else float("nan"))


def simulate_like(img, px_A, cfg, seed):
    from atomlens.sim.simulate import simulate

    h, w = (min(s, 512) for s in img.shape)
    r = simulate({**cfg, "shape": [h, w], "px_size_A": px_A}, seed)
    return r.image.astype(np.float64), r.points_px()[0]


def pt_all():
    """Print noise/contrast, hf power, atom/speckle and FWHM over all real Pt images and
    as many simulated ones: median and range of each."""
    real, sim = [], []
    for i, f in enumerate(sorted(PT.glob("*_HAADF_*.tif"))):
        img, px = _load(f)
        lab = np.loadtxt(f.with_name(f.name[:3] + "_Results.csv"), delimiter=",", skiprows=1)[:, 1:3]
        real.append((*noise_figures(img), *atom_contrast(img, lab)))
        s_img, truth = simulate_like(img, px, PT_SIM, i)
        sim.append((*noise_figures(s_img), *atom_contrast(s_img, truth)))
    for name, rows in (("real Pt (11)", real), ("simulated (11)", sim)):
        a = np.array(rows)
        cells = [f"{np.nanmedian(c):.3f} [{np.nanmin(c):.3f}-{np.nanmax(c):.3f}]" for c in a.T]
        print(f"{name:15s} noise/contrast {cells[0]}  hf {cells[1]}  atom/speckle {cells[2]}  FWHM {cells[3]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "sim_vs_real.png"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pt-all", action="store_true", help="figures of all 11 Pt images and 11 simulations")
    args = ap.parse_args(argv)
    if args.pt_all:
        pt_all()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = real_images()
    fig, axes = plt.subplots(len(rows), 4, figsize=(17, 4.3 * len(rows)))
    print(f"{'kind':26s} {'':5s} {'noise/contrast':>14s} {'hf power':>9s} {'atom/speckle':>12s} {'FWHM px':>8s}")
    for i, (name, real, px, lab, cfg) in enumerate(rows):
        sim, truth = simulate_like(real, px, cfg, args.seed)
        ax = axes[i]
        both = np.hstack([zscore(real), np.full((real.shape[0], 8), np.nan), zscore(sim)])
        lo, hi = np.nanpercentile(both, (0.5, 99.5))
        ax[0].imshow(both, cmap="gray", vmin=lo, vmax=hi)
        ax[0].set_title(f"{name}\nreal | simulated, {px:.3f} Å/px", fontsize=10)
        ax[0].axis("off")
        crop = min(160, real.shape[0] // 3)
        # the Pt crop straddles thin and thick carbon, where the atoms show; others the centre
        y0, x0 = (200, 150) if lab is not None else (real.shape[0] // 2 - crop // 2,) * 2
        zoom = np.hstack([zscore(real)[y0:y0 + crop, x0:x0 + crop], np.full((crop, 4), np.nan),
                          zscore(sim)[y0:y0 + crop, x0:x0 + crop]])
        lo, hi = np.nanpercentile(zoom, (0.5, 99.5))
        ax[1].imshow(zoom, cmap="gray", vmin=lo, vmax=hi)
        ax[1].set_title(f"{crop} px crop at ({x0}, {y0}), real | simulated", fontsize=10)
        ax[1].axis("off")
        for im, lbl, st in ((real, "real", "-"), (sim, "simulated", "--")):
            k, p = radial_power(im, px)
            ax[2].semilogy(k[1:], p[1:], st, label=lbl)
            z = zscore(im).ravel()
            ax[3].hist(z, bins=120, range=(-4, 6), histtype="step", density=True, label=lbl, ls=st)
            nc, hf = noise_figures(im)
            if lab is not None:
                pts = lab if lbl == "real" else truth
                ac, fw = atom_contrast(im, pts)
            else:
                ac = fw = float("nan")
            print(f"{name:26s} {lbl[:5]:5s} {nc:14.3f} {hf:9.3f} {ac:12.2f} {fw:8.1f}")
        ax[2].set_xlabel("spatial frequency (1/Å)")
        ax[2].set_ylabel("radial power (z-scored)")
        ax[2].legend()
        ax[3].set_xlabel("z-scored intensity")
        ax[3].set_ylabel("density")
        ax[3].legend()
    fig.tight_layout()
    from atomlens.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=70)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
