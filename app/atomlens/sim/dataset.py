"""Write simulated data sets to disk: HDF5 shards, a JSON manifest and a gallery PNG.

Layout of ``DIR``::

    manifest.json        config, seeds, classes, defect types, shard list
    shard_00000.h5       images (n, H, W) float32; labels (n, H, W) uint8 class map
                         (or masks (n, C, H, W) float16 for Gaussian labels);
                         points_xy (m, 2) float32 px, points_cls (m,) int8,
                         points_offset (n+1,) int64 (points of image i are
                         [offset[i], offset[i+1])); defect_labels (n, D) uint8;
                         px_size_A (n,) float32; seed (n,) int64
    gallery.png          the first images with their labelled points, for a quick look

Every shard is written to a temporary file and renamed, so an interrupted run never leaves
a half-written shard behind; the manifest is written last.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text
from .atoms import CLASSES, DEFECT_TYPES
from .simulate import SimConfig, SimResult, simulate

__all__ = ["stretch_to_uint8", "write_dataset", "read_shard", "gallery_image", "CLASS_COLOURS"]

#: RGB colours of the point classes (atom, dopant, vacancy), shared with the GUI overlays.
CLASS_COLOURS = {"atom": (80, 200, 255), "dopant": (255, 80, 80), "vacancy": (255, 220, 0)}


def _sim_many(args):
    cfg, seeds = args
    return [simulate(cfg, int(s)) for s in seeds]


def _atomic_write_h5(path: Path, results: list[SimResult]) -> None:
    import h5py

    tmp = path.with_name(f".{path.name}.tmp")
    n = len(results)
    pts = [r.points_px() for r in results]
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(p[0]) for p in pts])
    with h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=np.stack([r.image for r in results]), chunks=(1,) + results[0].image.shape,
                         compression="lzf")
        m0 = results[0].masks
        if m0.dtype == np.uint8:
            f.create_dataset("labels", data=np.stack([r.masks.argmax(0).astype(np.uint8) for r in results]),
                             chunks=(1,) + m0.shape[1:], compression="lzf")
        else:
            f.create_dataset("masks", data=np.stack([r.masks.astype(np.float16) for r in results]),
                             chunks=(1,) + m0.shape, compression="lzf")
        f["points_xy"] = np.concatenate([p[0] for p in pts]).astype(np.float32).reshape(-1, 2)
        f["points_cls"] = np.concatenate([p[1] for p in pts]).astype(np.int8)
        f["points_offset"] = offsets
        f["defect_labels"] = np.stack([r.defect_labels for r in results])
        f["px_size_A"] = np.array([r.px_size_A for r in results], np.float32)
        f["seed"] = np.array([r.meta["seed"] for r in results], np.int64)
        f.attrs["meta"] = json.dumps([r.meta for r in results], default=str)
    os.replace(tmp, path)


def read_shard(path) -> dict:
    """Read a shard back: a dict of arrays plus ``points`` (a list of (xy, cls) per image).

    Parameters
    ----------
    path : str or os.PathLike
        A ``shard_NNNNN.h5`` file written by :func:`write_dataset`.

    Returns
    -------
    dict
        Every dataset of the file, read whole (see the module's layout: ``images`` (n, H, W)
        float32, ``labels`` (n, H, W) uint8 or ``masks`` (n, C, H, W) float16, ``points_xy``
        (m, 2) float32 px, ``points_cls`` (m,) int8, ``points_offset`` (n+1,) int64,
        ``defect_labels`` (n, D) uint8, ``px_size_A`` (n,) float32 Å/px, ``seed`` (n,) int64),
        plus ``meta``, the list of the images' metadata dicts, and ``points``, a list of n
        ``(xy (k, 2) px, cls (k,))`` pairs, views into ``points_xy`` / ``points_cls``.

    Raises
    ------
    OSError
        If the file cannot be opened as HDF5.
    KeyError
        If it lacks ``points_offset`` or the ``meta`` attribute.
    """
    import h5py

    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in f.keys()}
        out["meta"] = json.loads(f.attrs["meta"])
    off = out["points_offset"]
    out["points"] = [(out["points_xy"][a:b], out["points_cls"][a:b]) for a, b in zip(off[:-1], off[1:])]
    return out


def stretch_to_uint8(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """8-bit grey levels of `image`, stretched between its `low` and `high` percentiles.

    Parameters
    ----------
    image : numpy.ndarray
        Any shape, typically (H, W); any real dtype.
    low, high : float, optional
        Percentiles (0..100) mapped to 0 and 255; values beyond them are clipped.

    Returns
    -------
    uint8 numpy.ndarray
        Same shape as `image`.  Levels are truncated, not rounded (and a 1e-12 guard against
        a zero range is added to it), so the `high` percentile itself usually gives 254.  A
        constant image maps to all zeros.

    Examples
    --------
    >>> stretch_to_uint8(np.array([[0.0, 1.0], [2.0, 4.0]]), 0, 100).tolist()
    [[0, 63], [127, 254]]
    """
    lo, hi = np.percentile(image, [low, high])
    return (np.clip((image - lo) / (hi - lo + 1e-12), 0, 1) * 255).astype(np.uint8)


def gallery_image(results: list[SimResult], cols: int = 4, tile: int = 256, points: bool = True):
    """A PIL image: `results` in a grid, contrast-stretched, with class-coloured points.

    Host atoms are not marked; dopants and vacancies get a circle in their
    :data:`CLASS_COLOURS` colour.  Each tile is captioned with the structure, the imaging mode
    and the pixel size (Å/px).

    Parameters
    ----------
    results : list of SimResult
        The images, in reading order (row by row); at least one.
    cols : int, optional
        Tiles per row.
    tile : int, optional
        Side of each tile, px; every image is resized (bilinear) to ``tile x tile``.
    points : bool, optional
        Whether to draw the labelled points.

    Returns
    -------
    PIL.Image.Image
        RGB, ``cols * (tile + 4) + 4`` px wide and ``rows * (tile + 4) + 4`` px high (a 4 px
        white gutter), with ``rows = ceil(len(results) / cols)``.
    """
    from PIL import Image, ImageDraw

    rows = -(-len(results) // cols)
    canvas = Image.new("RGB", (cols * (tile + 4) + 4, rows * (tile + 4) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, r in enumerate(results):
        img = r.image
        im = Image.fromarray(stretch_to_uint8(img)).resize((tile, tile), Image.BILINEAR).convert("RGB")
        x0, y0 = 4 + (k % cols) * (tile + 4), 4 + (k // cols) * (tile + 4)
        canvas.paste(im, (x0, y0))
        if points:
            xy, cls = r.points_px()
            s = tile / img.shape[1]
            for (x, y), c in zip(xy, cls):
                if c == 1:
                    continue  # host atoms stay unmarked: the image shows them
                col = CLASS_COLOURS[CLASSES[c]]
                cx, cy = x0 + (x + 0.5) * s, y0 + (y + 0.5) * s
                draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline=col, width=2)
        draw.text((x0 + 4, y0 + 2), f"{r.meta['structure']} {r.meta['mode']} {r.px_size_A:.3f} Å/px",
                  fill=(255, 255, 0))
    return canvas


def write_dataset(config, n: int, out_dir, *, seed: int = 0, shard_size: int = 256, workers: int = 1,
                  gallery: bool = True, progress=None, cancel=None) -> dict:
    """Simulate `n` images (seeds ``seed .. seed+n-1``) into `out_dir`; return the manifest.

    progress(fraction, message) is called as shards complete; `cancel` is any object with
    ``is_set()`` (e.g. threading.Event): when it is set, the shards written so far are kept,
    the manifest says how many images there are, and the function returns.

    Parameters
    ----------
    config : SimConfig, dict or str
        The simulation settings, as :meth:`SimConfig.from_any` takes them (a str is the path
        of a JSON file).
    n : int
        Number of images, at least 1.
    out_dir : str or os.PathLike
        Target directory, created if missing; existing shards of the same names are replaced.
    seed : int, optional
        Seed of the first image; image i uses ``seed + i``.
    shard_size : int, optional
        Images per HDF5 shard (the last shard may hold fewer).
    workers : int, optional
        Processes to simulate with (a ``fork`` pool when > 1).
    gallery : bool, optional
        Whether to write ``gallery.png`` of the first (up to 16) images.
    progress : callable, optional
        ``progress(fraction, message)``, fraction of the `n` images written (0..1].
    cancel : object with ``is_set()``, optional
        Checked before each shard.

    Returns
    -------
    dict
        The manifest also written to ``manifest.json``: ``format``, ``config`` (a dict),
        ``n`` (images written), ``seed_start``, ``classes``, ``defect_types``, ``shards`` (a
        list of ``{"file", "n", "seed_start"}``), ``created`` (local time, ISO 8601) and
        ``seconds`` (wall time, s).

    Raises
    ------
    ValueError
        If `n` < 1 or the configuration is invalid.
    """
    cfg = SimConfig.from_any(config)
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = np.arange(seed, seed + n)
    shards = [seeds[i:i + shard_size] for i in range(0, n, shard_size)]
    manifest = {
        "format": "atomlens-sim-dataset/1", "config": cfg.to_dict(), "n": 0, "seed_start": int(seed),
        "classes": list(CLASSES), "defect_types": list(DEFECT_TYPES), "shards": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    t0 = time.perf_counter()
    first: list[SimResult] = []
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        for k, sh in enumerate(shards):
            if cancel is not None and cancel.is_set():
                break
            chunks = np.array_split(sh, max(1, workers * 2)) if pool else [sh]
            parts = pool.map(_sim_many, [(cfg, c) for c in chunks]) if pool else [_sim_many((cfg, sh))]
            results = [r for p in parts for r in p]
            name = f"shard_{k:05d}.h5"
            _atomic_write_h5(out / name, results)
            manifest["shards"].append({"file": name, "n": len(results), "seed_start": int(sh[0])})
            manifest["n"] += len(results)
            if len(first) < 16:
                first += results[: 16 - len(first)]
            if progress:
                progress(manifest["n"] / n, f"{manifest['n']}/{n} images")
    finally:
        if pool:
            pool.close()
            pool.join()
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    if gallery and first:
        gallery_image(first).save(out / "gallery.png")
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest
