"""Exact, band-limited rendering of point sources convolved with a kernel.

An image of columns at sub-pixel positions r_j with weights w_j, convolved with a kernel K,
is computed in Fourier space as  F(k) = K^(k) * sum_j w_j exp(-2 pi i k.r_j).  The sum is
separable in kx and ky, so for a whole image it is one complex matrix product
(ky x atoms) @ (atoms x kx), followed by one inverse real FFT.  There is no pixel loop and
no splatting error: a column renders exactly where its label says.  The field is padded so
that columns near one edge do not wrap around to the other.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import fft as sfft

__all__ = ["Grid", "render_points", "gaussian_ft"]


@functools.lru_cache(maxsize=64)
def _grid(shape: tuple[int, int], pad: int):
    h, w = shape
    hp = sfft.next_fast_len(h + 2 * pad, real=True)
    wp = sfft.next_fast_len(w + 2 * pad, real=True)
    ky = np.fft.fftfreq(hp).astype(np.float32)  # cycles per pixel
    kx = np.fft.rfftfreq(wp).astype(np.float32)
    return hp, wp, ky, kx


class Grid:
    """The padded Fourier grid of an (H, W) image: frequencies in cycles/px and in 1/Å."""

    def __init__(self, shape: tuple[int, int], px_size_A: float, pad: int = 16):
        self.shape = (int(shape[0]), int(shape[1]))
        self.pad = int(pad)
        self.px_size_A = float(px_size_A)
        self.hp, self.wp, self.ky, self.kx = _grid(self.shape, self.pad)

    @property
    def k2_A(self) -> np.ndarray:
        """|k|^2 in 1/Å^2 on the rfft grid, shape (hp, wp//2+1)."""
        return (self.ky[:, None] ** 2 + self.kx[None, :] ** 2) / self.px_size_A**2

    def key(self):
        """A hashable key of the grid, for caches of arrays computed on it.

        Returns
        -------
        tuple
            ``((H, W), pad, px_size_A rounded to 1e-6 Å)``.
        """
        return (self.shape, self.pad, round(self.px_size_A, 6))


def gaussian_ft(grid: Grid, sigma_A: float) -> np.ndarray:
    """Fourier transform of a unit-integral Gaussian of std `sigma_A` on `grid` (real, float32).

    Parameters
    ----------
    grid : Grid
        The padded grid.
    sigma_A : float, Å
        Standard deviation of the Gaussian (0 gives all ones).

    Returns
    -------
    (hp, wp // 2 + 1) float32 numpy.ndarray
        ``exp(-2 pi² sigma² |k|²)`` on the rfft grid; 1 at k = 0.

    Examples
    --------
    >>> g = gaussian_ft(Grid((8, 8), 0.5, pad=0), 1.0)
    >>> g.shape, float(g[0, 0])
    ((8, 5), 1.0)
    """
    return np.exp(-2 * np.pi**2 * sigma_A**2 * grid.k2_A).astype(np.float32)


def _phases(pos: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """exp(-2 pi i pos*freq) as complex64, shape (n, len(freqs)).

    float32 sin/cos instead of a complex128 exp (7x faster); at the largest phases of a
    padded 512 px field (~1600 rad) float32 is still accurate to ~1e-4 rad (2e-5 px).
    """
    ph = np.outer(pos, freqs)
    ph *= np.float32(-2 * np.pi)
    out = np.empty(ph.shape, np.complex64)
    out.real = np.cos(ph)
    out.imag = np.sin(ph)
    return out


def _powers(pos: np.ndarray, n: int, count: int) -> np.ndarray:
    """exp(-2 pi i pos q / n) for q = 0..count-1, (len(pos), count) complex64, by a running
    product of z = exp(-2 pi i pos / n): one sin/cos per point instead of one per frequency
    (rounding grows as q * 6e-8, below 1e-5 for any image size we render)."""
    z = _phases(pos, np.array([1.0 / n], np.float32))
    out = np.empty((len(pos), count), np.complex64)
    out[:, 0] = 1
    if count > 1:
        out[:, 1:] = z
        np.cumprod(out[:, 1:], axis=1, out=out[:, 1:])
    return out


def _band(kernel_ft: np.ndarray, rel_tol: float = 1e-5) -> tuple[int, int]:
    """(n_ky, n_kx): the kernel is negligible for |ky index| >= n_ky and kx index >= n_kx."""
    mag = np.abs(kernel_ft)
    sig = mag > rel_tol * mag.max()
    cols = np.nonzero(sig.any(axis=0))[0]
    n_kx = int(cols.max()) + 1 if len(cols) else 1
    rows = np.nonzero(sig.any(axis=1))[0]
    hp = kernel_ft.shape[0]
    dist = np.minimum(rows, hp - rows)  # distance from zero frequency along ky
    n_ky = int(dist.max()) + 1 if len(rows) else 1
    return min(n_ky, hp // 2 + 1), n_kx


def render_points(grid: Grid, xy_px: np.ndarray, weights: np.ndarray, kernel_ft: np.ndarray) -> np.ndarray:
    """Sum of kernels centred at `xy_px` (x, y in pixels, pixel centres at integers).

    Parameters
    ----------
    grid : Grid
    xy_px : (n, 2) float
        Positions in pixels of the (unpadded) image.
    weights : (n,) float
        Amplitude of each point (the kernel's integral is multiplied by it).
    kernel_ft : (hp, wp//2+1) array
        Fourier transform of the kernel (centred at the origin) on the grid.

    Returns
    -------
    (H, W) float32 image.
    """
    h, w = grid.shape
    xy = np.asarray(xy_px, dtype=np.float32)
    wts = np.asarray(weights, dtype=np.float32)
    keep = (wts != 0) & (xy[:, 0] > -grid.pad) & (xy[:, 0] < w + grid.pad) \
        & (xy[:, 1] > -grid.pad) & (xy[:, 1] < h + grid.pad)
    xy, wts = xy[keep], wts[keep]
    if len(xy) == 0:
        return np.zeros(grid.shape, np.float32)
    x = xy[:, 0] + grid.pad
    y = xy[:, 1] + grid.pad
    # only the band where the kernel is not negligible: a probe's transform ends at twice
    # the aperture, often a third of Nyquist, which makes the product ~10x cheaper
    n_ky, n_kx = _band(kernel_ft)
    hp = grid.hp
    n_ky = min(n_ky, (hp + 1) // 2)
    rows = np.r_[0:n_ky, hp - n_ky + 1:hp]  # ky = 0..n_ky-1, then -(n_ky-1)..-1
    ex = _powers(x, grid.wp, n_kx)
    pos = _powers(y, hp, n_ky)
    ey = np.concatenate([pos, np.conj(pos[:, :0:-1])], axis=1)  # exp(+2 pi i q y/N) for -q
    ey *= wts[:, None]
    spec = np.zeros((hp, len(grid.kx)), np.complex64)
    band = ey.T @ ex
    band *= kernel_ft[rows, :n_kx]
    spec[rows, :n_kx] = band
    img = sfft.irfft2(spec, s=(grid.hp, grid.wp), workers=1)
    p = grid.pad
    return np.ascontiguousarray(img[p:p + h, p:p + w], dtype=np.float32)
