"""Image formation: HAADF/ADF by incoherent convolution with a physical probe, BF/ABF, STM.

HAADF-STEM (incoherent imaging): I(r) = sum_j count_j Z_j^n P(r - r_j), with n = 1.5-2
(Rutherford-like scattering screened by the electron cloud) and P the probe intensity.
The probe is computed from the optics, not assumed Gaussian:

    psi(k) = A(k) exp(-i chi(k)),  chi(k) = pi lambda df k^2 + (pi/2) Cs lambda^3 k^4,

with A the objective aperture (semi-angle alpha, i.e. |k| <= alpha/lambda), lambda the
relativistic electron wavelength, then P = |IFFT psi|^2 blurred by a Gaussian of the effective
source size.  (Kirkland, *Advanced Computing in Electron Microscopy*, ch. 3 and 5.)

BF and ABF are phenomenological: BF/ABF columns appear dark on a bright background, with
contrast growing slowly with Z (Z^0.6 for ABF, so O and Li columns show, as observed by
Findlay et al. 2010), ABF adding the weak bright rim seen in experiments.

STM topography: each surface atom contributes an orbital-like Gaussian bump whose apparent
height depends on the element, on the defect and on the sample bias; the tip is a paraboloid
applied by grey-level dilation (the exact rule for a rigid tip).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import ndimage

from .atoms import DOPANT, VACANCY, AtomTable
from .render import Grid, gaussian_ft, render_points

__all__ = ["PAD_A", "pad_px", "stm_top_layer", "ProbeParams", "electron_wavelength_A", "probe_ft", "probe_ft_filled",
           "probe_profile",
           "render_stem", "render_count_map", "render_stm", "StmParams", "MODES"]

MODES = ("HAADF", "ADF", "ABF", "BF", "STM")


def electron_wavelength_A(kv: float) -> float:
    """Relativistic electron wavelength (Å) at accelerating voltage `kv` (kV).

    Parameters
    ----------
    kv : float, kV
        Accelerating voltage, > 0.

    Returns
    -------
    float, Å
        ``12.2643 / sqrt(V (1 + 0.978476e-6 V))`` with V in volts.

    Examples
    --------
    >>> round(electron_wavelength_A(60), 5), round(electron_wavelength_A(200), 5)
    (0.04866, 0.02508)
    """
    v = kv * 1e3
    return 12.2643 / math.sqrt(v * (1 + 0.978476e-6 * v))


@dataclasses.dataclass(frozen=True)
class ProbeParams:
    """STEM probe optics.  defocus_A > 0 is underfocus (Scherzer convention)."""

    kv: float = 60.0
    alpha_mrad: float = 30.0
    defocus_A: float = 0.0
    cs_mm: float = 0.0
    source_fwhm_A: float = 0.6

    def rounded(self) -> "ProbeParams":
        """Parameters on a coarse grid, so random draws share cached probes."""
        return ProbeParams(round(self.kv), round(self.alpha_mrad * 2) / 2, round(self.defocus_A / 5) * 5,
                           round(self.cs_mm, 3), round(self.source_fwhm_A, 2))


@functools.lru_cache(maxsize=512)
def _probe_mtf_table(probe: ProbeParams, filled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Radial profile of the transform of the probe intensity: (k in 1/Å, value), unit at k=0.

    Without astigmatism the probe is radially symmetric, so its transform depends on |k| only
    and one table serves every pixel size.  psi^ is sampled out to 4 k_ap so that |psi|^2,
    whose transform reaches 2 k_ap, is not aliased.
    """
    lam = electron_wavelength_A(probe.kv)
    k_ap = probe.alpha_mrad * 1e-3 / lam  # 1/Å
    n = 256
    k = np.fft.fftfreq(n, d=1.0 / (8 * k_ap))  # spans -4 k_ap .. 4 k_ap
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    cs_A = probe.cs_mm * 1e7
    chi = np.pi * lam * probe.defocus_A * k2 + 0.5 * np.pi * cs_A * lam**3 * k2**2
    psi = np.fft.ifft2(np.where(k2 <= k_ap**2, np.exp(-1j * chi), 0))
    spec = np.fft.fft2(np.abs(psi) ** 2).real
    spec /= spec[0, 0]
    kr = np.sqrt(k2).ravel()
    bins = np.linspace(0, 2.2 * k_ap, 400)
    idx = np.digitize(kr, bins)
    hits = np.bincount(idx, minlength=len(bins) + 1)[1:len(bins)]
    prof = np.bincount(idx, spec.ravel(), minlength=len(bins) + 1)[1:len(bins)] / np.maximum(hits, 1)
    centres = 0.5 * (bins[1:] + bins[:-1])
    centres[0], prof[0] = 0.0, 1.0
    if filled:
        # radial bins that no grid point falls in (many at small k, where the 256-point grid
        # is coarser than the bins) hold 0: interpolate them from their neighbours instead
        ok = hits > 0
        ok[0] = True
        prof = np.interp(centres, centres[ok], prof[ok])
    return centres, np.clip(prof, 0, None)


@functools.lru_cache(maxsize=128)
def _probe_ft_filled_cached(grid_key, probe: ProbeParams) -> np.ndarray:
    shape, pad, px = grid_key
    grid = Grid(shape, px, pad)
    kt, vt = _probe_mtf_table(dataclasses.replace(probe, source_fwhm_A=0.0), filled=True)
    out = np.interp(np.sqrt(grid.k2_A), kt, vt, right=0.0)
    sigma_src = probe.source_fwhm_A / 2.3548
    out = out * np.exp(-2 * np.pi**2 * sigma_src**2 * grid.k2_A)
    return np.ascontiguousarray(out.astype(np.float32))


def probe_ft_filled(grid: Grid, probe: ProbeParams) -> np.ndarray:
    """As :func:`probe_ft`, but with the radial bins of the probe's transform that no
    sample falls in interpolated rather than zero.  :func:`probe_ft` keeps the zeros (they
    suppress some low spatial frequencies, periods of ~5-50 Å) so that existing configs
    render bit for bit as before; the new thick-support and patch textures use this one,
    since their low-frequency content (thickness, clumps) is the point of them.

    Parameters
    ----------
    grid : Grid
        The padded render grid.
    probe : ProbeParams
        The optics; rounded with :meth:`ProbeParams.rounded` first (and cached on that).

    Returns
    -------
    (hp, wp // 2 + 1) float32 numpy.ndarray
        The transform on the rfft grid, 1 at k = 0, 0 beyond twice the aperture; includes
        the Gaussian source blur.  Cached and shared: do not modify it in place.
    """
    return _probe_ft_filled_cached(grid.key(), probe.rounded())


@functools.lru_cache(maxsize=128)
def _probe_ft_cached(grid_key, probe: ProbeParams) -> np.ndarray:
    shape, pad, px = grid_key
    grid = Grid(shape, px, pad)
    kt, vt = _probe_mtf_table(dataclasses.replace(probe, source_fwhm_A=0.0))  # source applied below
    out = np.interp(np.sqrt(grid.k2_A), kt, vt, right=0.0)
    sigma_src = probe.source_fwhm_A / 2.3548
    out = out * np.exp(-2 * np.pi**2 * sigma_src**2 * grid.k2_A)
    return np.ascontiguousarray(out.astype(np.float32))


def probe_ft(grid: Grid, probe: ProbeParams) -> np.ndarray:
    """Transform of the probe intensity on `grid` (unit integral), cached per parameters.

    Parameters
    ----------
    grid : Grid
        The padded render grid.
    probe : ProbeParams
        The optics; rounded with :meth:`ProbeParams.rounded` first (and cached on that).

    Returns
    -------
    (hp, wp // 2 + 1) float32 numpy.ndarray
        The radial profile of the probe intensity's transform (aperture, defocus, Cs), times
        the Gaussian source blur; 1 at k = 0, 0 beyond twice the aperture.  Cached and
        shared: do not modify it in place.
    """
    return _probe_ft_cached(grid.key(), probe.rounded())


def probe_profile(probe: ProbeParams, px_size_A: float = 0.05, size: int = 256) -> np.ndarray:
    """Probe intensity image (size x size, centred, unit sum): for plots and tests.

    Parameters
    ----------
    probe : ProbeParams
        The optics (rounded as in :func:`probe_ft`).
    px_size_A : float, Å/px, optional
        Sampling of the image.
    size : int, optional
        Side of the image, px; the probe is centred on pixel ``(size // 2, size // 2)``.

    Returns
    -------
    (size, size) float32 numpy.ndarray
        Summing to 1; the field wraps around (no padding), so keep ``size * px_size_A``
        well above the probe's width.

    Examples
    --------
    >>> p = probe_profile(ProbeParams(kv=60, alpha_mrad=30), size=64)
    >>> p.shape, round(float(p.sum()), 4), np.unravel_index(p.argmax(), p.shape) == (32, 32)
    ((64, 64), 1.0, True)
    """
    g = Grid((size, size), px_size_A, pad=0)
    img = render_points(g, np.array([[size // 2, size // 2]]), np.ones(1), probe_ft(g, probe))
    return img / img.sum()


#: Atoms this far outside the image (Å) still shine into it: covers the probe's tails.
PAD_A = 3.0


def pad_px(px_size_A: float, pad_A: float = PAD_A) -> int:
    """Padding in pixels for a physical padding of `pad_A`.

    Parameters
    ----------
    px_size_A : float, Å/px
        Pixel size, > 0.
    pad_A : float, Å, optional
        Physical padding (:data:`PAD_A` by default).

    Returns
    -------
    int, px
        ``ceil(pad_A / px_size_A)``.

    Examples
    --------
    >>> pad_px(0.2), pad_px(0.07), pad_px(0.1, 1.0)
    (15, 43, 10)
    """
    return int(math.ceil(pad_A / px_size_A))


def _to_px(table: AtomTable, px_size_A: float) -> np.ndarray:
    return table.xy / px_size_A


def render_stem(table: AtomTable, shape, px_size_A: float, *, mode: str = "HAADF",
                probe: ProbeParams = ProbeParams(), z_exponent: float = 1.7,
                pad_A: float = PAD_A) -> np.ndarray:
    """Noise-free STEM image of the columns in `table` (intensity in arbitrary units).

    HAADF/ADF: bright columns, weights count * Z**z_exponent (ADF uses n = 1.3, giving lighter
    atoms more weight).  BF/ABF: 1 minus dark column contrast (see module notes).

    Parameters
    ----------
    table : AtomTable
        The columns (positions in Å from the image's top-left pixel centre); only occupied
        ones (``count > 0``) render.
    shape : (int, int)
        Image size (H, W), px.
    px_size_A : float, Å/px
        Pixel size.
    mode : {'HAADF', 'ADF', 'ABF', 'BF'}, optional
        Imaging mode, case-insensitive.
    probe : ProbeParams, optional
        The probe optics.
    z_exponent : float, optional
        The HAADF exponent n (ADF uses ``min(n, 1.3)``; BF uses Z**1, ABF Z**0.6).
    pad_A : float, Å, optional
        Columns up to this far outside the image still contribute.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        HAADF/ADF: the sum of ``count * Z**n`` times the unit-integral probe (arbitrary
        units, 0 on vacuum).  BF/ABF: 1 on the background, 0.4 at the 99.5th percentile of
        the dark contrast (darker still above it); ABF's rim may rise slightly above 1.

    Raises
    ------
    ValueError
        For another mode.

    Examples
    --------
    >>> from atomlens.sim.atoms import AtomTable
    >>> img = render_stem(AtomTable.from_arrays([[3.2, 3.2]], 42), (32, 32), 0.2)
    >>> img.shape, img.dtype, np.unravel_index(img.argmax(), img.shape) == (16, 16)
    ((32, 32), dtype('float32'), True)
    """
    grid = Grid(shape, px_size_A, pad_px(px_size_A, pad_A))
    occ = table.occupied
    xy = _to_px(table, px_size_A)[occ]
    Z = table.Z[occ].astype(np.float32)
    cnt = table.count[occ]
    P = probe_ft(grid, probe)
    mode = mode.upper()
    if mode in ("HAADF", "ADF"):
        n = z_exponent if mode == "HAADF" else min(z_exponent, 1.3)
        return render_points(grid, xy, cnt * Z**n, P)
    if mode in ("ABF", "BF"):
        w = cnt * Z ** (0.6 if mode == "ABF" else 1.0)
        core = render_points(grid, xy, w, P * gaussian_ft(grid, 0.25))
        if mode == "ABF":
            rim = render_points(grid, xy, w, P * gaussian_ft(grid, 0.9))
            dark = core - 0.35 * rim
        else:
            dark = core
        scale = float(np.percentile(dark, 99.5)) or 1.0
        return (1.0 - 0.6 * dark / scale).astype(np.float32)
    raise ValueError(f"unknown STEM mode {mode!r}; choose HAADF, ADF, BF or ABF")


def render_count_map(counts: np.ndarray, shape, px_size_A: float, *, Z: int = 6, mode: str = "HAADF",
                     probe: ProbeParams = ProbeParams(), z_exponent: float = 1.7,
                     pad_A: float = PAD_A) -> np.ndarray:
    """HAADF/ADF image of atoms given as counts per pixel (e.g. a thick amorphous support,
    :func:`atomlens.sim.structures.layered_support_map`) instead of as columns.

    `counts` lives on the padded render grid of :func:`render_stem` (shape (hp, wp), the
    image starting at ``pad_px(px_size_A, pad_A)``), so it adds to a render_stem image of
    the same shape, pixel size, probe and exponent: one FFT, whatever the number of atoms.

    Parameters
    ----------
    counts : (hp, wp) numpy.ndarray
        Atoms per pixel on the padded grid ``Grid(shape, px_size_A, pad_px(px_size_A, pad_A))``.
    shape : (int, int)
        Image size (H, W), px.
    px_size_A : float, Å/px
        Pixel size.
    Z : int, optional
        Atomic number of every atom in the map.
    mode : {'HAADF', 'ADF'}, optional
        Case-insensitive.
    probe : ProbeParams, optional
        The optics (its transform with filled bins, :func:`probe_ft_filled`).
    z_exponent : float, optional
        As for :func:`render_stem`.
    pad_A : float, Å, optional
        The padding `counts` was made for.

    Returns
    -------
    (H, W) float32 numpy.ndarray
        ``Z**n`` times `counts` convolved with the probe, cropped to the image.

    Raises
    ------
    ValueError
        For a mode other than HAADF/ADF, or `counts` not of the padded grid's shape.
    """
    mode = mode.upper()
    if mode not in ("HAADF", "ADF"):
        raise ValueError(f"a count map renders in HAADF or ADF only, not {mode!r}")
    from scipy import fft as sfft

    grid = Grid(shape, px_size_A, pad_px(px_size_A, pad_A))
    if counts.shape != (grid.hp, grid.wp):
        raise ValueError(f"count map must have the padded grid's shape {(grid.hp, grid.wp)}, not {counts.shape}")
    n = z_exponent if mode == "HAADF" else min(z_exponent, 1.3)
    spec = sfft.rfft2(np.asarray(counts, np.float32), workers=1)
    spec *= probe_ft_filled(grid, probe)
    img = sfft.irfft2(spec, s=(grid.hp, grid.wp), workers=1)
    p = grid.pad
    h, w = grid.shape
    return np.ascontiguousarray(img[p:p + h, p:p + w] * np.float32(float(Z) ** n), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class StmParams:
    """STM imaging.  Apparent heights in Å; bias in V (sample bias)."""

    bias_V: float = -1.0
    orbital_fwhm_A: float = 1.2
    corrugation_A: float = 0.3
    dopant_height_A: float = 0.5  # a donor-like dopant: bright in empty states (V > 0)
    vacancy_height_A: float = -0.6
    tip_radius_A: float = 8.0
    double_tip_offset_A: tuple[float, float] | None = None
    double_tip_ratio: float = 0.6


def stm_top_layer(table: AtomTable) -> np.ndarray:
    """Columns whose top atom lies within 0.5 Å of the highest occupied one: the surface
    layer an STM tip images (vacancy sites keep their height, so surface vacancies count).

    Parameters
    ----------
    table : AtomTable
        The columns.

    Returns
    -------
    (n,) bool numpy.ndarray
        The mask; unoccupied columns are included when high enough.  All False when no
        column is occupied.

    Examples
    --------
    >>> from atomlens.sim.atoms import AtomTable
    >>> t = AtomTable.from_arrays(np.zeros((3, 2)), 16, count=[1, 1, 0], height=[3.2, 1.6, 3.2])
    >>> stm_top_layer(t).tolist()
    [True, False, True]
    """
    occ = table.occupied
    if not occ.any():
        return occ
    return table.height >= table.height[occ].max() - 0.5


def render_stm(table: AtomTable, shape, px_size_A: float, stm: StmParams = StmParams(),
               pad_A: float = PAD_A) -> np.ndarray:
    """Constant-current topograph (heights in Å) of the top layer of `table`.

    Only the columns within 0.5 Å of the top of their local structure are imaged.  Dopants
    appear as protrusions at positive bias and as weaker depressions at negative bias (a
    donor-like state), vacancies as depressions at both; a Gaussian halo of 3x the orbital
    width carries the electronic part of each defect's contrast, as in STM of TMDs.

    Parameters
    ----------
    table : AtomTable
        The columns (positions in Å).  Imaged: occupied columns within 0.5 Å of the highest
        occupied one (:func:`stm_top_layer`), each a Gaussian bump of height
        ``stm.corrugation_A``.  Halos: every DOPANT column (``stm.dopant_height_A``, times -0.5
        at bias <= 0) and every VACANCY column (``stm.vacancy_height_A``), of any layer.
    shape : (int, int)
        Image size (H, W), px.
    px_size_A : float, Å/px
        Pixel size.
    stm : StmParams, optional
        Bias, orbital width, apparent heights and tip (a second apex when
        ``double_tip_offset_A`` is set; paraboloid dilation when ``tip_radius_A > 0``).
    pad_A : float, Å, optional
        The grid is padded by ``3 * pad_A``, since the halos are wide.

    Returns
    -------
    (H, W) float32 numpy.ndarray, Å
        Apparent height, 0 far from any column before the tip dilation.
    """
    grid = Grid(shape, px_size_A, pad_px(px_size_A, 3 * pad_A))  # defect halos are wide
    sel = table.occupied & stm_top_layer(table)
    xy = _to_px(table, px_size_A)
    sig = stm.orbital_fwhm_A / 2.3548
    K = gaussian_ft(grid, sig) * (2 * np.pi * (sig / px_size_A) ** 2)  # unit peak height
    h = render_points(grid, xy[sel], np.full(sel.sum(), stm.corrugation_A, np.float32), K)
    # electronic contrast of defects: a broader halo whose sign follows the bias
    sgn = 1.0 if stm.bias_V > 0 else -0.5
    halo_w = np.zeros(len(table), np.float32)
    halo_w[table.cls == DOPANT] = stm.dopant_height_A * sgn
    vac = table.cls == VACANCY
    halo_w[vac] = stm.vacancy_height_A
    m = halo_w != 0
    if m.any():
        sh = 3 * sig
        Kh = gaussian_ft(grid, sh) * (2 * np.pi * (sh / px_size_A) ** 2)
        h = h + render_points(grid, xy[m], halo_w[m], Kh)
    if stm.double_tip_offset_A is not None:
        off = np.asarray(stm.double_tip_offset_A) / px_size_A
        # a second apex at +d touches a feature at r while the main apex is at r - d
        h2 = ndimage.shift(h, (-off[1], -off[0]), order=1, mode="nearest")
        h = np.maximum(h, stm.double_tip_ratio * h2 + (1 - stm.double_tip_ratio) * h.min())
    if stm.tip_radius_A > 0:
        h = tip_dilation(h, px_size_A, stm.tip_radius_A)
    return h.astype(np.float32)


def tip_dilation(height_A: np.ndarray, px_size_A: float, radius_A: float) -> np.ndarray:
    """Image of a surface scanned by a paraboloid tip of apex radius `radius_A`.

    The tip touches where surface minus tip shape is highest: a grey-level dilation with
    the structuring function -r^2 / (2R).
    """
    reach = int(min(8, max(1, math.ceil(math.sqrt(2 * radius_A * 0.5) / px_size_A))))
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1] * px_size_A
    tip = -(xx**2 + yy**2) / (2 * radius_A)
    return ndimage.grey_dilation(height_A, structure=tip.astype(np.float32))

