"""Repairs applied to image data on loading: non-finite values, complex data, RGB, dtype."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["clean_nonfinite", "to_grey", "complex_to_real", "value_range", "float32_plan", "to_float32"]

#: Integers up to this size are exact in float32 (24-bit significand).
F32_EXACT_INT = 2**24
#: An offset is subtracted before the cast when the values sit this many times their spread
#: away from zero: a plain cast would keep fewer than 16 of float32's 24 bits for the contrast.
PEDESTAL_RATIO = 256.0
#: After the offset, values whose spread lies outside 2^-100 .. 2^100 are divided by a power of
#: two (float32 holds about 1.2e-38 .. 3.4e38; the margin keeps sums and squares finite).
SPAN_LIMITS = (2.0**-100, 2.0**100)
#: Values are converted (and scanned) in blocks of this many elements.
BLOCK = 1 << 20


def _blocks(flat_len: int):
    for i in range(0, flat_len, BLOCK):
        yield i, min(i + BLOCK, flat_len)


def value_range(data, file=None) -> tuple[int, object, object]:
    """(number of finite values, lowest, highest finite value) of an array, read block by block.

    Integers come back as Python ints (exact, even for uint64); floats as Python floats
    computed in float64 (long double is reduced to float64 first).  With ``file=(path, offset)``
    the values are read from that file (a raw array of `data`'s dtype and size at `offset`, as
    in a ``.npy``) with ordinary reads, so that scanning a large memory-mapped file does not map
    it all into memory.  Returns ``(0, None, None)`` when no value is finite.

    Parameters
    ----------
    data : array-like
        Any shape and numeric dtype (an ndarray or a ``np.memmap``); only ``dtype`` and ``size``
        are used when `file` is given.
    file : (path, offset) tuple, optional
        Read the values from this file instead, starting `offset` bytes in.  None (default):
        scan `data` itself.

    Returns
    -------
    n : int
        Number of finite values (every value, for integer and boolean data).
    lo, hi : int, float or None
        Lowest and highest finite value; None when ``n == 0``.

    Examples
    --------
    >>> import numpy as np
    >>> value_range(np.array([3.0, np.nan, -1.5, np.inf]))
    (2, -1.5, 3.0)
    >>> value_range(np.array([1, 2**63 + 5], dtype=np.uint64))
    (2, 1, 9223372036854775813)
    """
    dtype = np.dtype(data.dtype)
    n, lo, hi = 0, None, None
    for block in _iter_blocks(data, file):
        if not block.size:
            continue
        if dtype.kind in "iub":
            bl, bh = int(block.min()), int(block.max())
            n += block.size
        else:
            block = block.astype(np.float64) if dtype.itemsize > 8 else block
            good = np.isfinite(block)
            k = int(good.sum())
            if not k:
                continue
            sel = block if k == block.size else block[good]
            bl, bh = float(sel.min()), float(sel.max())
            n += k
        lo = bl if lo is None else min(lo, bl)
        hi = bh if hi is None else max(hi, bh)
    return n, lo, hi


def _iter_blocks(data, file=None):
    """1-D blocks of `data`'s values in memory order (the order does not matter to the callers)."""
    if file is not None:
        path, offset = file
        with open(path, "rb") as fh:
            fh.seek(int(offset))
            left = int(data.size)
            while left > 0:
                block = np.fromfile(fh, dtype=data.dtype, count=min(BLOCK, left))
                if block.size == 0:
                    break
                left -= block.size
                yield block
        return
    flat = np.asarray(data).ravel(order="K")
    for i, j in _blocks(flat.size):
        yield flat[i:j]


def float32_plan(dtype, lo, hi) -> tuple[object, float] | None:
    """``(offset, scale)`` so that ``(data - offset) / scale`` keeps the contrast in float32,
    or None when a plain cast does.

    Only integers wider than 24 bits and float64 (or long double) data need it: their values
    can sit on a pedestal far larger than their spread (uint64 counts near 2^63: a plain cast
    leaves one level), or lie outside float32's range (1e300 becomes inf).  The offset is the
    lowest value, computed exactly (integers) or in float64; the scale is a power of two, so
    that it loses nothing.  `lo`, `hi`: the finite range, as :func:`value_range` gives it.

    Parameters
    ----------
    dtype : numpy dtype or dtype-like
        The data's dtype.  Integers of 32 bits or more and floats of 64 bits or more may get a
        plan; anything else (uint16, float32, bool...) returns None.
    lo, hi : int, float or None
        Lowest and highest finite value of the data (ints exact for integer data).  ``lo=None``
        (no finite value) returns None.

    Returns
    -------
    (offset, scale) or None
        `offset` in the data's units (an int for integer data, else a float; 0.0 when only a
        scale is needed); `scale` a power of two (1.0 for integers).  None: a plain cast to
        float32 keeps the contrast.

    Examples
    --------
    >>> import numpy as np
    >>> float32_plan(np.int64, 2**40, 2**40 + 7)  # a pedestal 2^37 times the spread
    (1099511627776, 1.0)
    >>> float32_plan(np.float64, 0.0, 1.0) is None
    True
    >>> float32_plan(np.float64, 1e300, 2e300) == (0.0, 2.0**997)  # beyond float32: scaled down
    True
    """
    dtype = np.dtype(dtype)
    if lo is None or dtype.kind not in "iuf" or dtype.itemsize < (4 if dtype.kind in "iu" else 8):
        return None
    span = hi - lo
    big = max(abs(lo), abs(hi))
    if dtype.kind in "iu":
        if big <= F32_EXACT_INT or big <= PEDESTAL_RATIO * span:
            return None
        return lo, 1.0
    offset = lo if big > PEDESTAL_RATIO * span else 0.0
    spread = span if offset else big
    scale = 1.0
    if spread > 0 and not SPAN_LIMITS[0] <= spread <= SPAN_LIMITS[1]:
        scale = 2.0 ** math.floor(math.log2(spread))
    if not offset and scale == 1.0:
        return None
    return offset, scale


def to_float32(data, plan=None) -> np.ndarray:
    """`data` as a C-contiguous float32 ndarray, applying a :func:`float32_plan` if given.

    Integer offsets are subtracted in modular 64-bit integer arithmetic, which is exact for
    any spread below 2^64 (int64 data spanning more than 2^63 included).  Converted block by
    block: no float64 copy of the whole array is made.

    Parameters
    ----------
    data : array-like
        Any shape, real numeric dtype (a memory map is read through).
    plan : (offset, scale) tuple, optional
        As :func:`float32_plan` returns it: the values become ``(data - offset) / scale``.
        None (default): a plain cast.

    Returns
    -------
    ndarray, float32
        Same shape as `data`, C-contiguous.  Without a plan this may be `data` itself when it
        already is C-contiguous float32.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([2**40, 2**40 + 7], dtype=np.int64)
    >>> to_float32(d, (2**40, 1.0)).tolist()
    [0.0, 7.0]
    >>> np.unique(to_float32(d)).size  # a plain cast: float32 cannot tell 2^40 from 2^40 + 7
    1
    """
    if plan is None:
        arr = np.asarray(data)
        return np.ascontiguousarray(arr, dtype=np.float32)
    offset, scale = plan
    arr = np.asarray(data)
    out = np.empty(arr.shape, dtype=np.float32)
    src = arr.reshape(-1) if arr.flags.c_contiguous else np.ascontiguousarray(arr).reshape(-1)
    dst = out.reshape(-1)
    integer = arr.dtype.kind in "iu"
    if integer:
        off = np.uint64(int(offset) % 2**64)
    for i, j in _blocks(src.size):
        if integer:
            block = (src[i:j].astype(np.uint64) - off).astype(np.float64)  # wraps: exact difference
        else:
            block = src[i:j].astype(np.float64)
            if offset:
                block -= float(offset)
        if scale != 1.0:
            block /= scale
        dst[i:j] = block
    return out


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

    The alpha channel, if any, is ignored.  Accepts integer or float data.  Returns float32,
    or float64 for data wider than 16 bits (converted to float32 later, keeping the contrast).

    Parameters
    ----------
    rgb : (..., 3) or (..., 4) array
        Colour data, channels last in the order R, G, B (, A); any integer or float dtype.

    Returns
    -------
    (...) ndarray, float32 or float64
        ``0.2126 R + 0.7152 G + 0.0722 B``, in the input's units (0..255 stays 0..255).

    Examples
    --------
    >>> import numpy as np
    >>> g = to_grey(np.array([[[255, 0, 0], [0, 255, 0]]], dtype=np.uint8))
    >>> g.shape, g.dtype.name, [f"{v:.2f}" for v in g[0]]
    ((1, 2), 'float32', ['54.21', '182.38'])
    """
    rgb = np.asarray(rgb)
    if rgb.dtype.itemsize > 2:  # wide integers or float64: float32 may not hold them (see float32_plan)
        weights = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)
        return rgb[..., :3].astype(np.float64) @ weights
    weights = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    return (rgb[..., :3].astype(np.float32) @ weights).astype(np.float32)


def complex_to_real(data: np.ndarray) -> np.ndarray:
    """Modulus of complex data (an exit wave, a hologram reconstruction...): float32 for
    complex64, float64 for wider types (converted to float32 later, keeping the contrast).

    Parameters
    ----------
    data : ndarray
        Any shape; complex (real data pass too, as their absolute value).

    Returns
    -------
    ndarray
        ``|data|``, same shape; float32 for items of 4 bytes or less, else float64.

    Examples
    --------
    >>> import numpy as np
    >>> complex_to_real(np.array([3 + 4j], dtype=np.complex64)).tolist()
    [5.0]
    """
    out = np.abs(data)
    return out.astype(np.float32) if out.dtype.itemsize <= 4 else out.astype(np.float64, copy=False)
