"""Training data from annotations: the class map drawn around the annotated atoms, the image and
label pair written for training, and the strip held back from fine-tuning for scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..fileio import atomic_save_npy, atomic_write_text
from .annotations import Annotations

__all__ = ["LABEL_RADIUS_A", "LABEL_RADIUS_UNCALIBRATED_PX", "export_training_pair", "holdout_row", "label_map"]

#: Radius of the label discs drawn around each atom (as the simulation's "disc" labels).
LABEL_RADIUS_A = 0.5
#: Disc radius (px) for images without a calibration.
LABEL_RADIUS_UNCALIBRATED_PX = 2.0



def holdout_row(height: int, holdout: float) -> int:
    """First row of the strip held out from fine-tuning at the bottom of an annotated image of
    `height` rows (`height` when `holdout` is 0).

    Parameters
    ----------
    height : int, px
        Image height H.
    holdout : float
        Fraction of the rows held out, in [0, 1).

    Returns
    -------
    int
        ``H - round(H * holdout)``: rows from it to H - 1 are held out.

    Raises
    ------
    ValueError
        For `holdout` outside [0, 1).

    Examples
    --------
    >>> holdout_row(512, 0.2), holdout_row(512, 0.0)
    (410, 512)
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout}")
    return int(height - round(height * holdout))


def label_map(shape, x, y, cls, radius_px: float) -> np.ndarray:
    """A (H, W) uint8 class map with a disc of `radius_px` around each point.

    Like the simulation's ``disc`` labels: the pixels whose centres lie within `radius_px` of
    a point get its class; rarer classes (higher indices: dopant, vacancy) are drawn last and
    win where discs overlap.  Points may lie outside the map (their discs are clipped).

    Parameters
    ----------
    shape : (H, W)
    x, y : (n,) float, px
    cls : (n,) int
        Class index of each point (1..255).
    radius_px : float
    """
    h, w = (int(v) for v in shape)
    out = np.zeros((h, w), np.uint8)
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    c = np.asarray(cls, np.int64).reshape(-1)
    if not len(x):
        return out
    r = float(radius_px)
    R = int(math.ceil(r)) + 1
    oy, ox = (a.ravel() for a in np.mgrid[-R:R + 1, -R:R + 1])
    order = np.argsort(c, kind="stable")
    x, y, c = x[order], y[order], c[order]
    bx, by = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    px = bx[:, None] + ox[None]
    py = by[:, None] + oy[None]
    inside = ((px - x[:, None]) ** 2 + (py - y[:, None]) ** 2 <= r * r) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    cc = np.broadcast_to(c[:, None], px.shape)
    # later assignments win in numpy fancy indexing: classes ascend, so rarer classes win
    out[py[inside], px[inside]] = cc[inside].astype(np.uint8)
    return out


def export_training_pair(image, ann: Annotations, out_dir, stem: str, px_size_nm: float | None = None) -> list[Path]:
    """Write an annotated image as training data; returns the three paths written.

    Files (all written atomically):

    * ``<stem>.image.npy``: the image, float32 (H, W) (``np.load(..., allow_pickle=False)``);
    * ``<stem>.labels.npy``: uint8 (H, W) class map (indices into ``ann.class_names``), a
      disc of radius 0.5 Å around each atom (2 px when the image is uncalibrated), like the
      simulation's ``disc`` labels;
    * ``<stem>.annotations.json``: the annotations (the sidecar's content, with the pixel
      size used).

    Parameters
    ----------
    image : (H, W) array, or (N, H, W) of which frame ``ann.frame`` is taken
    ann : Annotations
        All atoms are taken as true (see the module notes).
    out_dir : path
    stem : str
        File name stem.
    px_size_nm : float or None
        Pixel size (nm/px); default ``ann.px_size_nm``.
    """
    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        if not 0 <= ann.frame < img.shape[0]:
            raise ValueError(f"frame {ann.frame} is not in the stack of {img.shape[0]} frames")
        img = img[ann.frame]
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image (or a stack), got shape {img.shape}")
    if ann.shape is not None and tuple(ann.shape) != img.shape:
        raise ValueError(f"the annotations were made on a {ann.shape[1]}x{ann.shape[0]} image, "
                         f"not this {img.shape[1]}x{img.shape[0]} one")
    if not stem or any(ch in stem for ch in "/\\") or stem in (".", ".."):
        raise ValueError(f"invalid file name stem {stem!r}")
    px_nm = ann.px_size_nm if px_size_nm is None else float(px_size_nm)
    radius = LABEL_RADIUS_UNCALIBRATED_PX if px_nm is None else LABEL_RADIUS_A / (px_nm * 10.0)
    labels = label_map(img.shape, ann.x, ann.y, ann.cls, radius)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.image.npy", out / f"{stem}.labels.npy", out / f"{stem}.annotations.json"]
    d = ann.to_dict()
    d["shape"] = list(img.shape)
    d["px_size_nm"] = px_nm
    d["label_radius_px"] = radius
    atomic_save_npy(paths[0], np.ascontiguousarray(img))
    atomic_save_npy(paths[1], labels)
    atomic_write_text(paths[2], json.dumps(d, indent=1, allow_nan=False))
    return paths
