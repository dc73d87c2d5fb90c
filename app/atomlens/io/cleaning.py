"""Repairs applied to image data on loading: non-finite values, complex data, RGB, dtype."""

from __future__ import annotations

import numpy as np

__all__ = ["clean_nonfinite", "to_grey", "complex_to_real"]


def clean_nonfinite(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN and ±inf by the mean of the finite values.

    Parameters
    ----------
    image : ndarray, float
        Any shape.

    Returns
    -------
    cleaned : ndarray, float32
        A copy when anything was replaced, else `image` itself (as float32).
    n_bad : int
        Number of values replaced.

    Raises
    ------
    ValueError
        When no value at all is finite.
    """
    image = np.asarray(image, dtype=np.float32)
    bad = ~np.isfinite(image)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return image, 0
    if n_bad == image.size:
        raise ValueError("the image contains no finite values (all NaN or infinite)")
    out = image.copy()
    out[bad] = float(np.mean(image[~bad], dtype=np.float64))
    return out, n_bad


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Convert (..., 3) or (..., 4) RGB(A) data to luminance (ITU-R BT.709 weights), float32.

    The alpha channel, if any, is ignored.  Accepts integer or float data.
    """
    rgb = np.asarray(rgb)
    weights = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    return (rgb[..., :3].astype(np.float32) @ weights).astype(np.float32)


def complex_to_real(data: np.ndarray) -> np.ndarray:
    """Modulus of complex data (an exit wave, a hologram reconstruction...), float32."""
    return np.abs(data).astype(np.float32)
