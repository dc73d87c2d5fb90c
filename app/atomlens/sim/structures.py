"""Projected crystal structures: unit cells of atom columns and their tiling over a field.

Every structure is a :class:`ProjectedCell`: two in-plane lattice vectors (Å) and the
columns of one cell, each with its element, its number of atoms along the beam and the
height of its top atom.  :func:`build` makes the named structures of :data:`STRUCTURES`;
:func:`from_ase` projects any ASE ``Atoms`` (or a CIF file) along a zone axis.

Lattice constants are room-temperature literature values.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .atoms import ATOM, AtomTable
from .elements import atomic_number

__all__ = ["Site", "ProjectedCell", "STRUCTURES", "build", "custom", "from_ase", "from_cif",
           "amorphous_support", "film_edge", "layered_support_map"]

SQ3 = math.sqrt(3.0)
SQ2 = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class Site:
    """One column of a projected unit cell.

    frac : (u, v) fractional coordinates along the cell vectors a1, a2.
    Z : atomic number.  count : atoms in the column per cell along the beam.
    height : height of the top atom in Å.  role : a name used to pick sites
    ('metal', 'chalcogen', 'A', 'B', 'O'...).
    """

    frac: tuple[float, float]
    Z: int
    count: float = 1.0
    height: float = 0.0
    role: str = ""


@dataclasses.dataclass(frozen=True)
class ProjectedCell:
    """A 2D periodic arrangement of atom columns (lattice vectors in Å, x right, y down)."""

    a1: tuple[float, float]
    a2: tuple[float, float]
    sites: tuple[Site, ...]
    name: str = "custom"

    @property
    def nn_distance_A(self) -> float:
        """Shortest distance between two columns (Å)."""
        t = self.tile(4 * max(self._lengths()), 4 * max(self._lengths()), margin_A=0)
        from scipy.spatial import cKDTree

        d, _ = cKDTree(t.xy).query(t.xy, k=2)
        return float(d[:, 1].min())

    def _lengths(self):
        return (math.hypot(*self.a1), math.hypot(*self.a2))

    def tile(self, width_A: float, height_A: float, *, rotation_deg: float = 0.0,
             shift_A: tuple[float, float] = (0.0, 0.0), margin_A: float = 3.0,
             thickness: float = 1.0) -> AtomTable:
        """Columns of this cell covering [-margin, width+margin] x [-margin, height+margin].

        The lattice is rotated by `rotation_deg` (counter-clockwise on screen) about the
        origin and then shifted by `shift_A`.  Column counts are multiplied by `thickness`
        (number of cells along the beam).

        Parameters
        ----------
        width_A, height_A : float, Å
            The field (W, H).
        rotation_deg : float, degrees, optional
            Rotation of the lattice.
        shift_A : (float, float), Å, optional
            Translation (x, y) applied after the rotation.
        margin_A : float, Å, optional
            Columns this far outside the field are kept too (edges inclusive).
        thickness : float, optional
            Cells along the beam.

        Returns
        -------
        AtomTable
            Every site of every cell that falls in the rectangle: Z, ``count * thickness``
            and height from the site, class ATOM, labelled, ``site`` the index into
            :attr:`sites`, defect 0.

        Examples
        --------
        >>> cell = custom((2.0, 0.0), (0.0, 2.0), [{"frac": [0, 0], "element": "Au"}])
        >>> t = cell.tile(4.0, 4.0, margin_A=0.0, thickness=3)
        >>> len(t), t.xy.max(axis=0).tolist(), float(t.count[0])
        (9, [4.0, 4.0], 3.0)
        """
        th = math.radians(rotation_deg)
        # y points down on screen, so a counter-clockwise rotation on screen is clockwise in (x, y)
        rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
        basis = rot @ np.array([self.a1, self.a2], dtype=float).T  # columns are a1', a2'
        inv = np.linalg.inv(basis)
        corners = np.array([[-margin_A, -margin_A], [width_A + margin_A, -margin_A],
                            [-margin_A, height_A + margin_A],
                            [width_A + margin_A, height_A + margin_A]]) - np.asarray(shift_A)
        ij = inv @ corners.T
        lo = np.floor(ij.min(axis=1)).astype(int) - 1
        hi = np.ceil(ij.max(axis=1)).astype(int) + 1
        ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
        cells = np.stack([ii.ravel(), jj.ravel()], axis=1).astype(float)
        fr = np.array([s.frac for s in self.sites], dtype=float)
        allfrac = (cells[:, None, :] + fr[None, :, :]).reshape(-1, 2)
        xy = allfrac @ basis.T + np.asarray(shift_A)
        ns = len(self.sites)
        Z = np.tile([s.Z for s in self.sites], len(cells))
        count = np.tile([s.count * thickness for s in self.sites], len(cells))
        height = np.tile([s.height for s in self.sites], len(cells))
        inside = ((xy[:, 0] >= -margin_A) & (xy[:, 0] <= width_A + margin_A)
                  & (xy[:, 1] >= -margin_A) & (xy[:, 1] <= height_A + margin_A))
        site = np.tile(np.arange(ns), len(cells))[inside]
        return AtomTable.from_arrays(xy[inside], Z[inside], count[inside], height[inside], ATOM,
                                     site=site)

    def role_index(self, role: str) -> list[int]:
        """Indices of the sites whose role (or element symbol) is `role`.

        Parameters
        ----------
        role : str
            A site role ('metal', 'chalcogen', 'A', ...) or an element symbol ('Mo'),
            case-sensitive.

        Returns
        -------
        list of int
            Indices into :attr:`sites`, in order; never empty.

        Raises
        ------
        ValueError
            When no site matches (the message lists the cell's roles).

        Examples
        --------
        >>> cell = build("MoS2")
        >>> cell.role_index("chalcogen"), cell.role_index("Mo")
        ([1], [0])
        """
        from .elements import SYMBOL_OF

        out = [i for i, s in enumerate(self.sites) if s.role == role or SYMBOL_OF.get(s.Z) == role]
        if not out:
            roles = sorted({s.role for s in self.sites if s.role})
            raise ValueError(f"{self.name} has no site {role!r}; it has {roles}")
        return out


# --------------------------------------------------------------------------- builders
def _hexagonal(a: float):
    return (a, 0.0), (a / 2, a * SQ3 / 2)


def graphene(a: float = 2.46) -> ProjectedCell:
    a1, a2 = _hexagonal(a)
    return ProjectedCell(a1, a2, (Site((1 / 3, 1 / 3), 6, role="C"), Site((2 / 3, 2 / 3), 6, role="C")),
                         "graphene")


def hbn(a: float = 2.50) -> ProjectedCell:
    a1, a2 = _hexagonal(a)
    return ProjectedCell(a1, a2, (Site((1 / 3, 1 / 3), 5, role="B"), Site((2 / 3, 2 / 3), 7, role="N")), "hBN")


_TMD_A = {("Mo", "S"): 3.16, ("W", "S"): 3.15, ("Mo", "Se"): 3.29, ("W", "Se"): 3.28,
          ("Mo", "Te"): 3.52, ("W", "Te"): 3.55}


def tmd(metal: str = "Mo", chalcogen: str = "S", a: float | None = None) -> ProjectedCell:
    """A 2H transition-metal dichalcogenide monolayer seen along c: metal columns of one atom,
    chalcogen columns of two (top and bottom layer), 1.56-1.7 Å above/below the metal plane."""
    a = a or _TMD_A.get((metal, chalcogen), 3.2)
    a1, a2 = _hexagonal(a)
    return ProjectedCell(a1, a2, (
        Site((1 / 3, 1 / 3), atomic_number(metal), 1, 1.6, "metal"),
        Site((2 / 3, 2 / 3), atomic_number(chalcogen), 2, 3.2, "chalcogen"),
    ), f"{metal}{chalcogen}2")


def perovskite(A: str = "Sr", B: str = "Ti", X: str = "O", a: float = 3.905) -> ProjectedCell:
    """ABX3 perovskite along [001]: A columns, B-X columns and pure X columns."""
    zb, zx = atomic_number(B), atomic_number(X)
    # the B-O column holds one B and one O per cell; keep B as its element with an effective count
    return ProjectedCell((a, 0.0), (0.0, a), (
        Site((0.0, 0.0), atomic_number(A), 1, 0, "A"),
        Site((0.5, 0.5), zb, 1 + (zx / zb) ** 1.7, 0, "B"),
        Site((0.5, 0.0), zx, 1, 0, "X"),
        Site((0.0, 0.5), zx, 1, 0, "X"),
    ), f"{A}{B}{X}3[001]")


_FCC_A = {"Au": 4.078, "Pt": 3.924, "Ag": 4.086, "Cu": 3.615, "Al": 4.05, "Pd": 3.891, "Ni": 3.524}


def fcc(element: str = "Au", zone: str = "001", a: float | None = None) -> ProjectedCell:
    """An fcc metal along [001] (square lattice of a/2 spacing... of columns at a/sqrt2) or [110]."""
    a = a or _FCC_A.get(element, 4.0)
    z = atomic_number(element)
    if zone == "001":
        return ProjectedCell((a, 0.0), (0.0, a), (Site((0, 0), z, 1, 0, element), Site((0.5, 0.5), z, 1, 0, element)),
                             f"{element}[001]")
    if zone == "110":
        return ProjectedCell((a / SQ2, 0.0), (0.0, a), (Site((0, 0), z, 1, 0, element),
                                                         Site((0.5, 0.5), z, 1, 0, element)), f"{element}[110]")
    raise ValueError(f"fcc zone must be '001' or '110', not {zone!r}")


def diamond110(element: str = "Si", a: float = 5.431) -> ProjectedCell:
    """A diamond-cubic crystal along [110]: dumbbells of two columns a/4 apart along [001]."""
    z = atomic_number(element)
    return ProjectedCell((a / SQ2, 0.0), (0.0, a), (
        Site((0.0, 0.0), z, 1, 0, element), Site((0.0, 0.25), z, 1, 0, element),
        Site((0.5, 0.5), z, 1, 0, element), Site((0.5, 0.75), z, 1, 0, element),
    ), f"{element}[110]")


#: Named structures for configs: name -> builder(**params).
STRUCTURES = {
    "graphene": graphene,
    "hbn": hbn,
    "tmd": tmd,
    "MoS2": lambda **k: tmd("Mo", "S", **k),
    "WS2": lambda **k: tmd("W", "S", **k),
    "MoSe2": lambda **k: tmd("Mo", "Se", **k),
    "WSe2": lambda **k: tmd("W", "Se", **k),
    "perovskite": perovskite,
    "SrTiO3": lambda **k: perovskite("Sr", "Ti", "O", **k),
    "fcc": fcc,
    "diamond110": diamond110,
    "Si110": lambda **k: diamond110("Si", **k),
}


def custom(a1, a2, sites, name: str = "custom") -> ProjectedCell:
    """A projected cell from plain data (for JSON configs): lattice vectors in Å and sites as
    dicts ``{"frac": [u, v], "element": "Mo", "count": 1, "height": 0, "role": "metal"}``.

    Parameters
    ----------
    a1, a2 : (float, float), Å
        In-plane lattice vectors (x right, y down); not parallel.
    sites : iterable of dict
        ``frac`` is required; the element is ``element`` or else ``Z`` (a symbol or number,
        default carbon); ``count`` defaults to 1, ``height`` (Å) to 0, ``role`` to "".
    name : str, optional
        The cell's name.

    Returns
    -------
    ProjectedCell

    Raises
    ------
    ValueError
        For no site, parallel vectors or an unknown element.
    KeyError
        For a site without ``frac``.

    Examples
    --------
    >>> cell = custom([3.9, 0], [0, 3.9], [{"frac": [0, 0], "element": "Sr"}, {"frac": [0.5, 0.5], "Z": 22}])
    >>> [s.Z for s in cell.sites], cell.a1
    ([38, 22], (3.9, 0.0))
    """
    out = []
    for st in sites:
        out.append(Site(tuple(float(v) for v in st["frac"]), atomic_number(st.get("element", st.get("Z", 6))),
                        float(st.get("count", 1.0)), float(st.get("height", 0.0)), str(st.get("role", ""))))
    if not out:
        raise ValueError("a custom cell needs at least one site")
    a1, a2 = tuple(float(v) for v in a1), tuple(float(v) for v in a2)
    if abs(a1[0] * a2[1] - a1[1] * a2[0]) < 1e-6:
        raise ValueError("custom cell vectors a1 and a2 are parallel")
    return ProjectedCell(a1, a2, tuple(out), name)


STRUCTURES["custom"] = custom


def build(name: str, **params) -> ProjectedCell:
    """The projected cell of a named structure (see :data:`STRUCTURES`); ``custom`` takes
    ``a1``, ``a2`` and ``sites`` (see :func:`custom`).

    Parameters
    ----------
    name : str
        A key of :data:`STRUCTURES` ('graphene', 'MoS2', 'SrTiO3', 'fcc', 'custom', ...),
        case-sensitive.
    **params
        Keyword arguments of that structure's builder (e.g. ``a`` in Å, ``element``,
        ``zone``).

    Returns
    -------
    ProjectedCell

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or a bad parameter value.
    TypeError
        For a parameter the builder does not take.

    Examples
    --------
    >>> cell = build("graphene")
    >>> cell.name, len(cell.sites), round(cell.nn_distance_A, 2)
    ('graphene', 2, 1.42)
    """
    try:
        maker = STRUCTURES[name]
    except KeyError:
        raise ValueError(f"unknown structure {name!r}; choose one of {sorted(STRUCTURES)}") from None
    return maker(**params)


# --------------------------------------------------------------------------- ASE / CIF
def _perpendicular_lattice_vectors(cell: np.ndarray, zone: np.ndarray, search: int = 4):
    """Two shortest non-parallel lattice vectors (integer index triples) perpendicular to `zone`."""
    t3 = zone @ cell
    rng = range(-search, search + 1)
    cands = []
    for i in rng:
        for j in rng:
            for k in rng:
                if (i, j, k) == (0, 0, 0):
                    continue
                v = np.array([i, j, k]) @ cell
                if abs(v @ t3) < 1e-6 * np.linalg.norm(v) * np.linalg.norm(t3):
                    cands.append((np.linalg.norm(v), (i, j, k), v))
    cands.sort(key=lambda c: c[0])
    first = cands[0]
    for c in cands[1:]:
        if np.linalg.norm(np.cross(first[2], c[2])) > 1e-6 * first[0] * c[0]:
            return first[1], c[1]
    raise ValueError("no in-plane lattice vectors found for this zone axis")


def from_ase(atoms, zone_axis=(0, 0, 1), *, merge_tol_A: float = 0.15, name: str | None = None) -> ProjectedCell:
    """Project an ASE ``Atoms`` crystal along the direct-lattice direction `zone_axis` [uvw].

    Atoms that fall within `merge_tol_A` of each other in projection become one column; its
    ``count`` is the number of atoms per repeat along the beam and its Z the heaviest one
    (lighter atoms in the same column add to an effective count, HAADF-weighted with n=1.7).

    Parameters
    ----------
    atoms : ase.Atoms
        A periodic crystal (its cell defines the lattice).
    zone_axis : (int, int, int), optional
        The beam direction [uvw] in the crystal's direct lattice.
    merge_tol_A : float, Å, optional
        Projected distance below which atoms share a column.
    name : str, optional
        Default: the chemical formula and the zone, ``"<formula>[uvw]"``.

    Returns
    -------
    ProjectedCell
        a1, a2 the two shortest independent lattice vectors perpendicular to the zone,
        expressed in an in-plane frame with x along a1; site heights (Å, the top atom of
        each column along the beam) relative to the lowest one; roles empty.

    Raises
    ------
    ValueError
        If no two lattice vectors (indices up to ±4) lie perpendicular to the zone.
    ImportError
        If ASE is not installed.
    """
    from ase.build import cut

    zone = np.asarray(zone_axis, dtype=int)
    cell = np.asarray(atoms.cell)
    ia, ib = _perpendicular_lattice_vectors(cell, zone)
    slab = cut(atoms, a=ia, b=ib, c=tuple(int(v) for v in zone), tolerance=1e-3)
    c = np.asarray(slab.cell)
    # in-plane orthonormal frame: e1 along a, e2 in the a-b plane, perpendicular to the beam
    e1 = c[0] / np.linalg.norm(c[0])
    beam = np.cross(c[0], c[1])
    beam /= np.linalg.norm(beam)
    e2 = np.cross(beam, e1)
    a1 = (float(c[0] @ e1), float(c[0] @ e2))
    a2 = (float(c[1] @ e1), float(c[1] @ e2))
    frac = slab.get_scaled_positions(wrap=True)[:, :2] % 1.0
    heights = slab.positions @ beam
    zs = slab.numbers
    basis2 = np.array([a1, a2])
    cols: list[dict] = []
    for f, z, h in zip(frac, zs, heights):
        for col in cols:
            d = (f - col["frac"] + 0.5) % 1.0 - 0.5
            if np.linalg.norm(d @ basis2) < merge_tol_A:
                col["members"].append((int(z), float(h)))
                break
        else:
            cols.append({"frac": f.copy(), "members": [(int(z), float(h))]})
    sites = []
    for col in cols:
        zmax = max(z for z, _ in col["members"])
        eff = sum((z / zmax) ** 1.7 for z, _ in col["members"])
        top = max(h for _, h in col["members"])
        sites.append(Site(tuple(float(v) for v in col["frac"]), zmax, eff, top))
    hmin = min(s.height for s in sites)
    sites = [dataclasses.replace(s, height=s.height - hmin) for s in sites]
    return ProjectedCell(a1, a2, tuple(sites), name or f"{atoms.get_chemical_formula()}[{''.join(map(str, zone))}]")


def from_cif(path, zone_axis=(0, 0, 1), **kw) -> ProjectedCell:
    """Read a CIF (or any file ASE reads) and project it along `zone_axis`.

    Parameters
    ----------
    path : str or os.PathLike
        The structure file (format from its extension, as :func:`ase.io.read` guesses it).
    zone_axis : (int, int, int), optional
        The beam direction [uvw].
    **kw
        ``merge_tol_A`` and ``name``, passed to :func:`from_ase`.

    Returns
    -------
    ProjectedCell

    Raises
    ------
    OSError
        If the file cannot be read.
    ValueError
        As :func:`from_ase`, or for a file ASE cannot parse.
    ImportError
        If ASE is not installed.
    """
    from ase.io import read

    return from_ase(read(str(path)), zone_axis, **kw)


# --------------------------------------------------------------------------- amorphous
def amorphous_support(width_A: float, height_A: float, rng: np.random.Generator, *,
                      density_per_A2: float = 0.38, min_dist_A: float = 1.2, Z: int = 6,
                      margin_A: float = 3.0) -> AtomTable:
    """Random, unlabelled columns of a thin amorphous film (carbon by default).

    Points are drawn with a minimum projected distance (dart throwing in a grid), at
    `density_per_A2` columns per Å^2 (monolayer graphene has 0.38).

    Parameters
    ----------
    width_A, height_A : float, Å
        The field (W, H).
    rng : numpy.random.Generator
        Source of the positions and counts.
    density_per_A2 : float, columns per Å², optional
        Target density: n is Poisson-distributed with mean ``density * area`` over the field
        with its margin; the thinning may leave fewer when the density is high for
        `min_dist_A`.
    min_dist_A : float, Å, optional
        Smallest projected distance between two columns.
    Z : int, optional
        Atomic number of every column.
    margin_A : float, Å, optional
        The film covers [-margin, W + margin] x [-margin, H + margin].

    Returns
    -------
    AtomTable
        At most n columns, each of 0.5..1.5 atoms (uniform), class ATOM, unlabelled, site -1.
    """
    w, h = width_A + 2 * margin_A, height_A + 2 * margin_A
    n = rng.poisson(density_per_A2 * w * h)
    # oversample, then thin out points closer than min_dist (keeps a liquid-like order)
    pts = rng.uniform((0, 0), (w, h), size=(int(n * 1.6) + 1, 2))
    from scipy.spatial import cKDTree

    pairs = cKDTree(pts).query_pairs(min_dist_A, output_type="ndarray")
    keep = np.ones(len(pts), bool)
    keep[pairs[:, 1]] = False  # of each close pair drop the later point (Matern thinning)
    pts = pts[keep][:n] - margin_A
    return AtomTable.from_arrays(pts, Z, count=rng.uniform(0.5, 1.5, len(pts)), labelled=False)


def film_edge(width_A: float, height_A: float, rng: np.random.Generator, *,
              coverage=(0.1, 0.5), wiggle=(0.03, 0.12), edge_A=(2.0, 40.0)):
    """The edge of a support film: a smooth random curve across the field with vacuum on
    one side (the film ends, as at the rim of a hole in a carbon film).

    Returns ``support(x_A, y_A) -> 0..1`` (1 on the film, 0 in vacuum), broadcasting over
    arrays of coordinates in Å.  The film thins out towards its edge over a width drawn
    from `edge_A` (Å, a [lo, hi] range or a number), as a real film's rim tapers.  The vacuum side covers roughly a
    fraction `coverage` of the field; the curve wanders by `wiggle` (fraction of the field
    size) over a few harmonics.

    Parameters
    ----------
    width_A, height_A : float, Å
        The field (W, H).
    rng : numpy.random.Generator
        Draws the direction, offset, harmonics and taper once, here; the returned function
        is deterministic.
    coverage : (float, float), optional
        Range of the vacuum's share of the field.
    wiggle : (float, float), optional
        Range of the curve's amplitude, as a fraction of max(W, H) (halved and more for the
        higher harmonics).
    edge_A : (float, float) or float, Å, optional
        Width of the taper (the tanh scale), a range or a fixed value.

    Returns
    -------
    callable
        ``support(x_A, y_A)``: float64 array of the broadcast shape of its arguments,
        values in [0, 1].

    Examples
    --------
    >>> support = film_edge(100.0, 100.0, np.random.default_rng(0))
    >>> v = support(np.linspace(0, 100, 5)[None, :], np.linspace(0, 100, 5)[:, None])
    >>> v.shape, bool(((v >= 0) & (v <= 1)).all())
    ((5, 5), True)
    """
    a = rng.uniform(0, 2 * np.pi)
    n = np.array([np.cos(a), np.sin(a)])  # points into vacuum
    t = np.array([-n[1], n[0]])
    size = float(max(width_A, height_A))
    centre = np.array([width_A, height_A]) / 2
    # distance of the edge from the centre along n: the vacuum half-plane beyond it holds
    # ~`coverage` of a square field (linear in the offset, near enough for a random draw)
    off = (0.5 - rng.uniform(*coverage)) * size
    amps = rng.uniform(*wiggle, 3) * size / np.array([1.0, 2.0, 3.5])
    freqs = rng.uniform(0.5, 1.5, 3) * np.array([1.0, 2.0, 4.0]) * 2 * np.pi / size
    phs = rng.uniform(0, 2 * np.pi, 3)
    edge = float(rng.uniform(*edge_A)) if np.ndim(edge_A) else float(edge_A)

    def support(x, y):
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        u = (x - centre[0]) * n[0] + (y - centre[1]) * n[1] - off
        s = (x - centre[0]) * t[0] + (y - centre[1]) * t[1]
        for am, fr, ph in zip(amps, freqs, phs):
            u = u - am * np.cos(fr * s + ph)
        return 0.5 * (1.0 - np.tanh(u / edge))

    return support


def layered_support_map(grid_shape, pad: int, px_size_A: float, rng: np.random.Generator, *,
                        layers: float, density_per_A2: float = 0.38, thickness_var: float = 0.0,
                        thickness_scale_A: float | None = None, roughness: float = 0.0,
                        roughness_scale_A: float = 4.0, support=None) -> np.ndarray:
    """Projected atom counts per pixel of a thick amorphous support of `layers` independent
    layers (each of `density_per_A2` columns per Å^2), on the padded (hp, wp) render grid
    whose image starts at (`pad`, `pad`).

    Independent layers superpose as a Poisson point process: the mean count grows with the
    thickness and its fluctuation (the speckle, once seen through the probe) with the
    square root, as in real amorphous films, unlike scaling one layer's counts.  Positions
    are binned to pixels (the support is unlabelled, and the probe is several pixels wide
    at 0.1-0.4 Å/px, so the binning does not show).  `thickness_var` (relative std over the
    field) varies the thickness smoothly over `thickness_scale_A`; `support(x_A, y_A)` (see
    :func:`film_edge`) removes the film where it is 0.  `roughness` (relative std) adds
    the mottling of a real film at `roughness_scale_A` (Gaussian-correlated, a few Å: its
    clumps and surface roughness), which a pure point process lacks.  Returns float32 (hp, wp).

    Parameters
    ----------
    grid_shape : (int, int)
        (hp, wp), px: the padded render grid (:class:`atomlens.sim.render.Grid`'s ``hp``, ``wp``).
    pad : int, px
        Where the image starts on that grid (x = y = 0 Å at pixel (pad, pad)).
    px_size_A : float, Å/px
        Pixel size.
    rng : numpy.random.Generator
        Source of the fields and of the counts.
    layers : float
        Number of layers (negative counts as 0).
    density_per_A2 : float, columns per Å², optional
        Column density of one layer.
    thickness_var : float, optional
        Relative std of the smooth thickness change (0 for none).
    thickness_scale_A : float, Å, optional
        Its correlation length; default 0.15..0.5 x the grid's longer side (drawn).
    roughness : float, optional
        Relative std of the mottling (0 for none).
    roughness_scale_A : float, Å, optional
        Its correlation length (the std of the Gaussian that shapes it).
    support : callable, optional
        ``support(x_A, y_A) -> 0..1`` (e.g. from :func:`film_edge`); the mean count is
        multiplied by it.

    Returns
    -------
    (hp, wp) float32 numpy.ndarray
        Atoms per pixel, Poisson samples (whole numbers) of mean ``layers * density *
        px_size_A²`` times the thickness, roughness and support factors.
    """
    from .noise import poisson, smooth_field

    hp, wp = grid_shape
    lam = np.full((hp, wp), np.float32(max(layers, 0.0) * density_per_A2 * px_size_A**2), np.float32)
    if thickness_var:
        scale = (thickness_scale_A if thickness_scale_A else rng.uniform(0.15, 0.5) * max(hp, wp) * px_size_A)
        f = smooth_field((hp, wp), rng, scale / px_size_A)
        f -= f.mean()
        f *= np.float32(thickness_var / (float(f.std()) or 1.0))  # relative std over the field
        f += np.float32(1.0)
        np.maximum(f, 0, out=f)
        lam *= f
    if roughness:
        from .noise import band_limited_noise
        from .render import Grid, gaussian_ft

        g = band_limited_noise((hp, wp), rng, gaussian_ft(Grid((hp, wp), px_size_A, 0), roughness_scale_A))
        g *= np.float32(roughness)
        g += np.float32(1.0)
        np.maximum(g, 0, out=g)
        lam *= g
    if support is not None:
        xs = (np.arange(wp) - pad) * px_size_A
        ys = (np.arange(hp) - pad) * px_size_A
        lam *= support(xs[None, :], ys[:, None]).astype(np.float32)
    return poisson(lam, rng)
