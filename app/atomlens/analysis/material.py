"""Material hint: what the microscopist knows about the sample, used to check column classes.

The network sees a patch of lattice, not the sample's name.  In a 2H transition-metal
dichalcogenide (TMD) seen along c that is not always enough: a Se2 -> Se column in MoSe2 (the
dimmest column on the brighter sublattice) looks like a Mo dopant on a W site in WSe2, and the
network, trained on both, calls some of each the other (``bench/accuracy.py --confusion``).
Told the material, :func:`apply_material_hint` tells the metal sublattice from the chalcogen
one and corrects the classes that cannot be right there:

* a column on the chalcogen sublattice that is called a dopant but is dimmer than its
  sublattice (an S2 -> S or Se2 -> Se column) becomes a vacancy;
* a column on the chalcogen sublattice called an atom but with almost no intensity left
  becomes a vacancy;
* a visible column on the metal sublattice called a vacancy becomes a dopant when its
  intensity differs from its sublattice's (W in MoSe2, Mo in WSe2), an atom otherwise.

Each column's level is the image, smoothed over a fifth of the nearest-neighbour distance,
at the column's position, less a local background (the smoothed minimum over 2.5 neighbour
distances: the empty hexagon centres).  It is compared with the median of its six
same-sublattice neighbours (at sqrt(3) x the nearest-neighbour distance) and of its three
other-sublattice neighbours (at 1 x), so strain, grain boundaries and a slowly varying
background do not matter.  The sublattice whose neighbours are brighter is found column by
column; which of the two is the metal comes from the material (Z-contrast, I ~ Z^1.7).  When
the contrast between the two sublattices is far from what the material can show (a WS2 image
said to be MoSe2), or the columns' spacing is not the material's, nothing is changed and the
note says why.
The thresholds were chosen on simulated images with seeds used neither for training nor for
validation or testing (see README, "Material hint").
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

# scipy and the simulator's tables are imported where they are used: the names of the
# materials are read at start-up (the GUI's Material list, ``atomlens detect --help``)
if TYPE_CHECKING:
    from .atoms import AtomList

__all__ = ["MATERIALS", "MaterialInfo", "SUGGEST_NOTE", "apply_material_hint", "canonical_name",
           "column_levels", "material_names", "suggest_material"]

#: Z-contrast exponent used to tell which sublattice is brighter (HAADF: 1.5-1.9).
Z_EXPONENT = 1.7

#: A column whose level is below this fraction of its sublattice's is dimmer than the sublattice.
DIMMER = 0.85
#: A chalcogen column below this fraction of its sublattice has lost (nearly) everything.
EMPTY = 0.35
#: A metal column above this fraction of its sublattice is visible (not a vacancy).
VISIBLE = 0.25
#: A metal column differing from its sublattice by more than this factor is a dopant.
DOPANT_FACTOR = 1.35
#: The two sublattices must differ by at least this factor, per column, to be told apart.
MIN_SUBLATTICE_RATIO = 1.15
#: The two sublattices must be told apart on at least this fraction of the columns.
MIN_TOLD_APART = 0.5
#: :func:`suggest_material` reads at most this square (px) from the centre of the image ...
SUGGEST_WINDOW_PX = 512
#: ... and needs at least this many columns there.
MIN_SUGGEST_COLUMNS = 30
#: Every note of :func:`suggest_material` starts with this.
SUGGEST_NOTE = "material hint suggested"
#: Z-contrast exponents that bound the sublattice contrast a material can show (ADF to HAADF).
Z_EXPONENT_RANGE = (1.3, 2.0)
#: Probe tails compress the measured contrast: a material's lower bound is relaxed to
#: 1 + this x (bound - 1), its upper bound stretched by 1.3.
CONTRAST_SLACK = 0.4
#: A lattice whose nearest-neighbour distance is off the material's by more than this
#: fraction is not that material: the hint is not applied.
NN_TOLERANCE = 0.15


@dataclasses.dataclass(frozen=True)
class MaterialInfo:
    """A 2H TMD monolayer: metal columns of one atom, chalcogen columns of two."""

    name: str
    metal: str
    chalcogen: str

    @property
    def nn_distance_A(self) -> float:
        """Metal-chalcogen distance in projection (a / sqrt(3))."""
        from ..sim.structures import tmd

        return tmd(self.metal, self.chalcogen).nn_distance_A

    @property
    def chalcogen_brighter(self) -> bool:
        """True when the S2/Se2/Te2 columns outshine the metal columns (MoSe2, MoTe2)."""
        from ..sim.elements import atomic_number

        zm, zx = atomic_number(self.metal), atomic_number(self.chalcogen)
        return 2 * zx ** Z_EXPONENT > zm ** Z_EXPONENT

    def contrast_range(self) -> tuple[float, float]:
        """Bounds of the brighter / dimmer sublattice level ratio this material can show in
        an image (over :data:`Z_EXPONENT_RANGE`, relaxed for the probe's tails)."""
        from ..sim.elements import atomic_number

        zm, zx = atomic_number(self.metal), atomic_number(self.chalcogen)
        vals = []
        for n in Z_EXPONENT_RANGE:
            q = 2 * zx ** n / zm ** n
            vals.append(max(q, 1 / q))
        lo, hi = min(vals), max(vals)
        return 1 + CONTRAST_SLACK * (lo - 1), 1.3 * hi


# WTe2 is left out: its W and Te2 columns are within 10 % of each other (and it is 1T').
MATERIALS = {m.name: m for m in (
    MaterialInfo("MoS2", "Mo", "S"), MaterialInfo("MoSe2", "Mo", "Se"), MaterialInfo("MoTe2", "Mo", "Te"),
    MaterialInfo("WS2", "W", "S"), MaterialInfo("WSe2", "W", "Se"),
)}


def material_names() -> list[str]:
    """Names accepted by :func:`apply_material_hint` (and ``atomlens detect --material``)."""
    return list(MATERIALS)


def canonical_name(text) -> str | None:
    """The name in :data:`MATERIALS` that `text` spells, case aside ("mose2" -> "MoSe2"), or None.

    Parameters
    ----------
    text : object
        A material's name in any case, surrounding spaces ignored (converted with ``str``).

    Returns
    -------
    str or None
        A key of :data:`MATERIALS`; None for a material AtomLens does not know.

    Examples
    --------
    >>> canonical_name(" mose2 "), canonical_name("graphene")
    ('MoSe2', None)
    """
    return {k.lower(): k for k in MATERIALS}.get(str(text).strip().lower())


def _lookup(material) -> MaterialInfo:
    if isinstance(material, MaterialInfo):
        return material
    key = canonical_name(material)
    if key is None:
        raise ValueError(f"unknown material {material!r}; known: {', '.join(MATERIALS)}")
    return MATERIALS[key]


def column_levels(image, xy, nn_px: float, *, strip_rows: int = 2048) -> np.ndarray:
    """Background-corrected intensity of the image at each column position.

    The image is smoothed with a Gaussian of 0.2 x `nn_px`; the background is the minimum of
    the smoothed image over 2.5 x `nn_px`, smoothed over `nn_px` (both on a grid of about a
    fifth of `nn_px`).  Large images are processed in strips of `strip_rows` rows (plus a
    margin), so memory stays bounded.

    Parameters
    ----------
    image : (H, W) array
        The image, bright columns (Z-contrast); any intensity scale.
    xy : (n, 2) array
        Column positions (x, y), px of `image`.
    nn_px : float
        The columns' nearest-neighbour distance, px (e.g. :func:`~atomlens.analysis.lattice.median_nn_distance`).
    strip_rows : int
        Rows per strip.

    Returns
    -------
    (n,) float64 array
        The smoothed image at each position (bilinear) less the local background there, in the
        image's intensity units; NaN for positions above the first row (y < -0.5).
    """
    from scipy import ndimage

    img = np.asarray(image, np.float32)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    h = img.shape[0]
    out = np.full(len(xy), np.nan)
    margin = math.ceil(6 * nn_px) + 2
    k = max(1, int(nn_px / 5))
    size = round(2.5 * nn_px / k) | 1
    for r0 in range(0, h, strip_rows):
        r1 = min(h, r0 + strip_rows)
        sel = (xy[:, 1] >= r0 - 0.5) & (xy[:, 1] < r1 - 0.5) if r1 < h else xy[:, 1] >= r0 - 0.5
        if not sel.any():
            continue
        a, b = max(0, r0 - margin) // k * k, min(h, r1 + margin)  # the coarse grid stays aligned
        s = ndimage.gaussian_filter(img[a:b], 0.2 * nn_px)
        # the background varies over neighbour distances: found on every k-th pixel (k about
        # nn / 5), which keeps the wide filters cheap
        coarse = s[::k, ::k]
        bg = ndimage.gaussian_filter(ndimage.minimum_filter(coarse, size=size), nn_px / k)
        yy, xx = xy[sel, 1] - a, xy[sel, 0]
        out[sel] = (ndimage.map_coordinates(s, [yy, xx], order=1, mode="nearest")
                    - ndimage.map_coordinates(bg, [yy / k, xx / k], order=1, mode="nearest"))
    return out


def _sublattice_refs(xy, level, nn_px):
    """Median level of each column's same-sublattice (sqrt 3 x nn) and other-sublattice
    (1 x nn) neighbours; NaN where fewer than 3 (same) or 2 (other) are found."""
    from scipy.spatial import cKDTree

    n = len(xy)
    k = min(12, n - 1)
    d, idx = cKDTree(xy).query(xy, k=k + 1, distance_upper_bound=1.95 * nn_px)
    d, idx = d[:, 1:] / nn_px, idx[:, 1:]
    valid = idx < n
    lv = np.where(valid, level[np.minimum(idx, n - 1)], np.nan)
    other_m = valid & (d > 0.75) & (d < 1.3)
    same_m = valid & (d > 1.5) & (d < 1.95)
    with warnings.catch_warnings():  # rows without neighbours: all-NaN slices, NaN wanted
        warnings.simplefilter("ignore", RuntimeWarning)
        other = np.nanmedian(np.where(other_m, lv, np.nan), axis=1)
        same = np.nanmedian(np.where(same_m, lv, np.nan), axis=1)
    other[other_m.sum(1) < 2] = np.nan
    same[same_m.sum(1) < 3] = np.nan
    return same, other


def _sublattices(image, xy, nn_px):
    """Per column: level, same- and other-sublattice reference levels, whether the two
    sublattices are told apart there (`ok`), and |log| of their ratio."""
    level = column_levels(image, xy, nn_px)
    same, other = _sublattice_refs(xy, level, nn_px)
    with np.errstate(all="ignore"):
        ok = np.isfinite(same) & np.isfinite(other) & (same > 0) & (other > 0)
        log_q = np.abs(np.log(np.where(ok, same / np.where(ok, other, 1), 1)))
        ok &= log_q > math.log(MIN_SUBLATTICE_RATIO)
    return level, same, other, ok, log_q


def suggest_material(atoms: AtomList, image, px_size_A: float | None) -> str | None:
    """A note suggesting the material hint when no material was given and the columns look
    like a 2H TMD seen along c; None otherwise.

    The columns must be spaced as some material of :data:`MATERIALS` (so `px_size_A` must be
    a calibrated pixel size, not an estimate), form two sublattices that are told apart on at
    least half of them (as :func:`apply_material_hint` requires), and differ by a contrast
    that some material of :data:`MATERIALS` can show; the note names those materials.  Only
    the central :data:`SUGGEST_WINDOW_PX` square of the image is read, so the cost does not
    grow with the image.  Graphene, h-BN (spaced 1.42-1.45 Å), metals, perovskites and
    single atoms give no note.

    Parameters
    ----------
    atoms : AtomList
        The columns found, px of `image`, with the classes atom, dopant and vacancy (a model
        without them gives None).
    image : (H, W) array
        The image the atoms were found in, bright columns.
    px_size_A : float or None
        The file's calibrated pixel size, Å/px; None (or 0) gives None.

    Returns
    -------
    str or None
        A note starting with :data:`SUGGEST_NOTE`, naming the materials that fit.
    """
    from .lattice import median_nn_distance

    names = atoms.class_names
    if not px_size_A or not all(c in names for c in ("atom", "dopant", "vacancy")):
        return None
    img = np.asarray(image, np.float32)
    h, w = img.shape
    half = SUGGEST_WINDOW_PX // 2
    y0, x0 = max(0, h // 2 - half), max(0, w // 2 - half)
    y1, x1 = min(h, y0 + SUGGEST_WINDOW_PX), min(w, x0 + SUGGEST_WINDOW_PX)
    xy = atoms.xy
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1 - 1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1 - 1)
    xy = xy[inside] - (x0, y0)
    if len(xy) < MIN_SUGGEST_COLUMNS:
        return None
    nn_px = median_nn_distance(xy)
    nn_A = nn_px * float(px_size_A)
    spaced = [m for m in MATERIALS.values() if abs(nn_A / m.nn_distance_A - 1) <= NN_TOLERANCE]
    if not spaced:
        return None
    _level, _same, _other, ok, log_q = _sublattices(img[y0:y1, x0:x1], xy, nn_px)
    if ok.sum() < MIN_TOLD_APART * len(xy):
        return None
    contrast = float(np.median(np.exp(log_q[ok])))
    fits = [m.name for m in spaced if m.contrast_range()[0] <= contrast <= m.contrast_range()[1]]
    if not fits:
        return None
    return (f"{SUGGEST_NOTE}: the columns look like a 2H TMD ({nn_A:.2f} Å apart, two sublattices "
            f"{contrast:.1f}x apart, as in {', '.join(fits)}); naming the material (Material in the Analysis "
            f"panel, --material on the command line) tells single chalcogen vacancies from metal dopants")


def apply_material_hint(atoms: AtomList, image, material, *, px_size_A: float | None = None):
    """Correct the classes of `atoms` that the material rules out; returns (AtomList, note).

    Parameters
    ----------
    atoms : AtomList
        Detected columns (in the pixels of `image`), with the classes atom, dopant, vacancy.
    image : (H, W) array
        The image the atoms were found in, with bright columns.
    material : str or MaterialInfo
        One of :data:`MATERIALS` (case does not matter).
    px_size_A : float, optional
        Pixel size used for the detection; when given, a lattice whose nearest-neighbour
        distance does not match the material's is left alone.

    Returns
    -------
    atoms : AtomList
        A new list with corrected classes (positions and scores unchanged), or `atoms` itself
        when the hint could not be applied.
    note : str
        What was done, or why nothing was, for the user.

    Raises
    ------
    ValueError
        For a material not in :data:`MATERIALS`.
    """
    from .lattice import median_nn_distance

    info = _lookup(material)
    names = atoms.class_names
    if not all(c in names for c in ("atom", "dopant", "vacancy")):
        return atoms, f"material hint {info.name} not applied: the model's classes are {', '.join(names[1:])}"
    ATOM, DOPANT, VACANCY = (names.index(c) for c in ("atom", "dopant", "vacancy"))
    if len(atoms) < 10:
        return atoms, f"material hint {info.name} not applied: too few columns ({len(atoms)})"
    xy = atoms.xy
    nn_px = median_nn_distance(xy)
    if px_size_A:
        nn_A, want = nn_px * px_size_A, info.nn_distance_A
        if abs(nn_A / want - 1) > NN_TOLERANCE:
            return atoms, (f"material hint {info.name} not applied: the columns are {nn_A:.2f} Å apart, "
                           f"{info.name} has {want:.2f} Å")
    level, same, other, ok, log_q = _sublattices(image, xy, nn_px)
    with np.errstate(all="ignore"):
        r = np.where(ok, level / np.where(ok, same, 1), np.nan)
    if ok.sum() < MIN_TOLD_APART * len(atoms):
        return atoms, (f"material hint {info.name} not applied: the two sublattices of a TMD cannot be told "
                       f"apart in this image")
    contrast = float(np.median(np.exp(log_q[ok])))
    lo, hi = info.contrast_range()
    if not lo <= contrast <= hi:
        return atoms, (f"material hint {info.name} not applied: the two sublattices differ {contrast:.2f}x "
                       f"here, {info.name}'s would differ {lo:.2f}-{hi:.2f}x")
    chal = ok & ((same > other) == info.chalcogen_brighter)
    metal = ok & ~chal
    cls = atoms.cls.copy()
    to_vac = chal & (((cls == DOPANT) & (r < DIMMER)) | ((cls == ATOM) & (r < EMPTY)))
    seen = metal & (cls == VACANCY) & (r > VISIBLE)
    off = np.abs(np.log(np.maximum(np.where(seen, r, 1.0), 1e-6))) > math.log(DOPANT_FACTOR)
    cls[to_vac] = VACANCY
    cls[seen & off] = DOPANT
    cls[seen & ~off] = ATOM
    changed = int((cls != atoms.cls).sum())
    out = dataclasses.replace(atoms, cls=cls, score=atoms.score.copy())
    what = "chalcogen" if info.chalcogen_brighter else "metal"
    note = (f"material hint {info.name}: {changed} column class{'es' if changed != 1 else ''} corrected "
            f"({what} sublattice brighter; {int(metal.sum())} metal and {int(chal.sum())} chalcogen columns told apart)")
    return out, note
