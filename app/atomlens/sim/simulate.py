"""``simulate(config, seed) -> SimResult``: one labelled image, deterministic for a seed.

A config is a JSON-serialisable dict (or :class:`SimConfig`).  Any number in it may be given
as a range ``[lo, hi]`` (drawn uniformly for each image) and any string as a list of choices,
so one config describes a whole randomised training distribution.

Real-image artefacts (issue 24; all optional, and a config without them renders bit for bit
as before, since their random numbers are drawn only when a key is present).  ``noise`` keys,
STEM modes, heights in multiples of the clean render's 1-99 % contrast:

* ``ramp``: linear background of this height across the image, random direction;
* ``bowl``: background rising quadratically from a random centre to this height at the edge;
* ``patch``: {prob, n, area (field fraction), brightness, texture (0 smooth .. 1 speckled)}:
  hydrocarbon patches, soft irregular edges, own speckle; atoms under a patch brighter than
  5x (where it is over half its height) are unlabelled;
* ``thickness_var``: relative std of a smooth multiplicative thickness change;
* ``probe_tail``: fraction of the intensity in a Gaussian halo of std ``probe_tail_sigma_A``
  (default [3, 8] Å);
* ``streaks``: mean number of scan streaks (1-3 lines with a gain or offset jump) per image.

These (except streaks) act before the dose, so they get shot noise.  ``single_atoms``
``structure_params``: ``support_layers`` (a thick a-C film of that many independent layers,
rendered as a Poisson count map through the probe), ``support_thickness_var``,
``support_roughness`` (+ ``support_roughness_scale_A``), ``vacuum_prob`` (the film ends
inside the field along a smooth, tapering edge; no atoms beyond it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

import numpy as np

from . import augment, defects, imaging, noise
from .atoms import ATOM, CLASSES, DEFECT_TYPES, DOPANT, VACANCY, AtomTable
from .elements import atomic_number
from .render import Grid, gaussian_ft, render_points
from .structures import amorphous_support, build, fcc, film_edge, from_cif, layered_support_map

__all__ = ["SimConfig", "SimResult", "simulate", "draw"]


@dataclasses.dataclass
class SimConfig:
    """Everything that defines a simulated data set (see the module docstring for ranges)."""

    structure: Any = "graphene"  # a name in STRUCTURES, "single_atoms", or a list to choose from
    structure_params: dict = dataclasses.field(default_factory=dict)
    cif: str | None = None  # a CIF file projected along zone_axis (overrides structure)
    zone_axis: tuple = (0, 0, 1)
    shape: tuple = (256, 256)
    px_size_A: Any = 0.1
    thickness: Any = 1.0  # unit cells along the beam (3D crystals)
    mode: Any = "HAADF"  # HAADF, ADF, ABF, BF, STM
    z_exponent: Any = 1.7
    probe: dict = dataclasses.field(default_factory=dict)  # ProbeParams fields
    stm: dict = dataclasses.field(default_factory=dict)  # StmParams fields (+ double_tip_prob)
    defects: dict = dataclasses.field(default_factory=dict)
    augment: dict = dataclasses.field(default_factory=lambda: {"rotation": True, "shift": True})
    noise: dict = dataclasses.field(default_factory=lambda: {"dose_e_per_A2": 1e5})
    labels: dict = dataclasses.field(default_factory=lambda: {"kind": "disc", "radius_A": 0.5})
    #: alternatives merged over the settings above, one drawn per image (with optional
    #: "weight"): e.g. per-structure dopants and thicknesses in one training mix
    variants: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_any(cls, cfg) -> "SimConfig":
        """A config from a SimConfig, a dict of its fields, or the path of a JSON file.

        Parameters
        ----------
        cfg : SimConfig, dict or str
            A SimConfig is returned as it is; a str is read as a UTF-8 JSON file holding
            such a dict.  Missing fields take their defaults; the values are not checked
            here (a bad one fails in :func:`simulate`), nor copied.

        Returns
        -------
        SimConfig

        Raises
        ------
        ValueError
            For keys that are not fields (``unknown simulation setting(s): [...]``), or a
            file that is not JSON (:class:`json.JSONDecodeError`).
        OSError
            If the file cannot be read.

        Examples
        --------
        >>> SimConfig.from_any({"structure": "MoS2", "shape": [64, 64]}).shape
        [64, 64]
        """
        if isinstance(cfg, SimConfig):
            return cfg
        if isinstance(cfg, str):
            with open(cfg, encoding="utf-8") as fh:
                cfg = json.load(fh)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(cfg) - names
        if unknown:
            raise ValueError(f"unknown simulation setting(s): {sorted(unknown)}")
        return cls(**cfg)

    def to_dict(self) -> dict:
        """The config as plain JSON data (a JSON round trip of its fields).

        Returns
        -------
        dict
            Every field, tuples turned into lists; :meth:`from_any` of it gives an equal
            config up to those lists.

        Raises
        ------
        TypeError
            If a field holds a value JSON cannot encode.

        Examples
        --------
        >>> SimConfig(shape=(64, 64)).to_dict()["shape"]
        [64, 64]
        """
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclasses.dataclass
class SimResult:
    """One simulated micrograph with exact labels.

    image : (H, W) float32.  atoms : AtomTable (Å) of the labelled columns inside the image,
    vacancies included.  masks : (C, H, W) per-class masks (uint8 one-hot for ``disc``,
    float32 for ``gaussian``), classes as in :data:`CLASSES`.  px_size_A : pixel size.
    meta : the values drawn for this image, the image-level defect labels and more.
    """

    image: np.ndarray
    atoms: AtomTable
    masks: np.ndarray
    px_size_A: float
    meta: dict

    def points_px(self) -> tuple[np.ndarray, np.ndarray]:
        """(xy in px of the image, class index) of all labelled columns."""
        return self.atoms.xy / self.px_size_A, self.atoms.cls.copy()

    @property
    def defect_labels(self) -> np.ndarray:
        """Multi-hot vector over DEFECT_TYPES (pristine set when there is no defect)."""
        v = np.zeros(len(DEFECT_TYPES), np.uint8)
        for name in self.meta["defect_types"]:
            v[DEFECT_TYPES.index(name)] = 1
        return v


def draw(rng: np.random.Generator, spec):
    """A value from a spec: a number, ``[lo, hi]`` (uniform), or a list of choices.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draw; nothing is drawn for a plain value or a range with lo == hi.
    spec : object
        A list or tuple of two numbers (not bools) is a range; any other list or tuple is a
        list of choices (one picked uniformly); anything else is returned as it is.

    Returns
    -------
    object
        A float for a range (lo itself when lo == hi), an element of the choices, or `spec`.

    Raises
    ------
    ValueError
        For an empty list of choices.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> draw(rng, 5), draw(rng, [2, 2]), draw(rng, ["HAADF"])
    (5, 2.0, 'HAADF')
    >>> 0.1 <= draw(rng, [0.1, 0.2]) <= 0.2
    True
    """
    if isinstance(spec, (list, tuple)):
        if len(spec) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec):
            lo, hi = float(spec[0]), float(spec[1])
            return lo if lo == hi else float(rng.uniform(lo, hi))
        return spec[int(rng.integers(len(spec)))]
    return spec


def _draw_dict(rng, d: dict) -> dict:
    return {k: draw(rng, v) for k, v in d.items()}


def _sites(cell, role):
    return None if role in (None, "any") else cell.role_index(role)


def _single_atoms(field_A, rng, params, margin_A) -> tuple[AtomTable, None, dict | None]:
    """Heavy single atoms and small clusters on amorphous carbon.

    Parameters (``structure_params``, drawn): element, n_atoms, n_clusters, cluster_element,
    and for the support either the thin film of old (support_density, support_thickness:
    one layer of columns whose counts are scaled) or, when ``support_layers`` is given, a
    thick film of that many independent layers (mean ~ layers, speckle ~ sqrt(layers)),
    with ``support_thickness_var`` (relative smooth thickness change over the field),
    ``support_roughness`` (relative std of its mottling at ``support_roughness_scale_A``,
    default 4 Å) and ``vacuum_prob`` (probability that the film ends inside the field, vacuum beyond a
    smooth edge; no atoms there).  The thick film is returned as a spec (third item) and
    rendered as a count map at imaging time, one FFT whatever its thickness.
    """
    z = atomic_number(draw(rng, params.get("element", "Pt")))
    thick = None
    if "support_layers" in params:
        support = None
        if rng.random() < float(params.get("vacuum_prob", 0.0)):
            support = film_edge(*field_A, rng)
        thick = {"layers": float(params["support_layers"]),
                 "density": float(params.get("support_density", 0.38)),
                 "thickness_var": float(params.get("support_thickness_var", 0.0)),
                 "roughness": float(params.get("support_roughness", 0.0)),
                 "roughness_scale_A": float(params.get("support_roughness_scale_A", 4.0)),
                 "support": support, "vacuum": support is not None}
        t = AtomTable.empty()
    else:
        t = amorphous_support(*field_A, rng, density_per_A2=draw(rng, params.get("support_density", [0.3, 0.5])),
                              margin_A=margin_A)
        t.count *= np.float32(draw(rng, params.get("support_thickness", [1.0, 3.0])))
    n_atoms = int(round(draw(rng, params.get("n_atoms", [3, 15]))))
    t = defects.adatoms(t.subset(np.ones(len(t), bool)), rng, n_atoms, z, field_A, min_dist_A=0.0)
    t.cls[t.cls == DOPANT] = ATOM
    t.defect[:] = 0
    pts = []
    for _ in range(int(round(draw(rng, params.get("n_clusters", [0, 2]))))):
        cl = fcc(draw(rng, params.get("cluster_element", "Pt")), "110").tile(8, 8, rotation_deg=rng.uniform(0, 360))
        cl = cl.subset(np.linalg.norm(cl.xy - 4, axis=1) < rng.uniform(2.5, 5.0))
        cl.xy += rng.uniform(0.2, 0.8, 2) * np.asarray(field_A) - 4
        cl.count[:] = rng.integers(1, 4, len(cl))
        pts.append(cl)
    for cl in pts:
        t = t.concat(cl)
    if thick is not None and thick["support"] is not None and len(t):
        t = t.subset(thick["support"](t.xy[:, 0], t.xy[:, 1]) > 0.5)  # heavy atoms sit on the film
    return t, None, thick


def simulate(config, seed: int) -> SimResult:
    """Simulate one labelled micrograph.  Same config and seed, same result, bit for bit.

    Parameters
    ----------
    config : SimConfig, dict or str
        As :meth:`SimConfig.from_any` takes it; ranges and choices in it are drawn for this
        image (and one of ``variants``, by weight, merged over it first).
    seed : int
        Seed of the image's ``numpy.random.default_rng``; every random number comes from it.

    Returns
    -------
    SimResult
        ``image`` (H, W) float32 (``config.shape`` is (H, W)): STEM in detector units after
        noise, gain and offset, STM heights in Å; ``atoms``, the labelled columns whose
        centres lie in the image (positions in Å, moved with any line jitter; for STM only
        the surface layer plus dopants and vacancies); ``masks`` (C, H, W); ``px_size_A``,
        the pixel size drawn (Å/px); ``meta``, the values drawn, ``defect_types`` and
        ``n_atoms`` per class.

    Raises
    ------
    ValueError
        For unknown settings, structures, modes, sites or label kinds, and for
        ``support_layers`` outside HAADF/ADF.
    """
    cfg = SimConfig.from_any(config)
    rng = np.random.default_rng(seed)
    if cfg.variants:
        wts = np.array([float(v.get("weight", 1.0)) for v in cfg.variants])
        pick = dict(cfg.variants[int(rng.choice(len(wts), p=wts / wts.sum()))])
        pick.pop("weight", None)
        cfg = SimConfig.from_any({**{k: v for k, v in cfg.to_dict().items() if k != "variants"}, **pick})
    h, w = (int(v) for v in cfg.shape)
    px = float(draw(rng, cfg.px_size_A))
    field = (w * px, h * px)
    mode = str(draw(rng, cfg.mode)).upper()
    # columns this far outside the image still show in it: the rendering pad plus a bond
    # (STM defect halos are three times wider than a probe's tails)
    margin = (3 if mode == "STM" else 1) * imaging.PAD_A + 1.0
    aug = cfg.augment
    rot = draw(rng, aug.get("rotation", True))
    rot_deg = float(rng.uniform(0, 360)) if rot is True else float(rot or 0.0)
    structure = draw(rng, cfg.structure)
    # a custom cell's vectors and sites are geometry, not [lo, hi] ranges: used as given
    params = dict(cfg.structure_params) if structure == "custom" else _draw_dict(rng, cfg.structure_params)
    thickness = float(draw(rng, cfg.thickness))
    d = cfg.defects
    cell = None
    thick = None
    if structure == "single_atoms":
        t, cell, thick = _single_atoms(field, rng, params, margin)
    else:
        cell = from_cif(cfg.cif, tuple(cfg.zone_axis)) if cfg.cif else build(structure, **params)
        gb = d.get("grain_boundary", {})
        if gb and rng.random() < draw(rng, gb.get("prob", 0.0)):
            t = defects.grain_boundary(cell, field, rng, margin_A=margin, thickness=thickness,
                                       misorientation_deg=gb.get("misorientation_deg"))
        else:
            shift = tuple(rng.uniform(0, 10, 2)) if aug.get("shift", True) else (0.0, 0.0)
            t = cell.tile(*field, rotation_deg=rot_deg, shift_A=shift, margin_A=margin, thickness=thickness)
    # ---- defects (exact labels)
    if "alloy" in d:
        a = d["alloy"]
        t = defects.substitute(t, rng, atomic_number(draw(rng, a["element"])), draw(rng, a.get("fraction", 0.1)),
                               sites=_sites(cell, a.get("sites")))
    if "dopant" in d:
        a = d["dopant"]
        n = a.get("n")
        t = defects.substitute(t, rng, atomic_number(draw(rng, a["element"])), draw(rng, a.get("rate", 0.0)),
                               sites=_sites(cell, a.get("sites")),
                               n=None if n is None else int(round(draw(rng, n))), field_A=field)
    if "vacancy" in d:
        a = d["vacancy"]
        t = defects.vacancies(t, rng, draw(rng, a.get("rate", 0.0)), sites=_sites(cell, a.get("sites")))
    if "partial_vacancy" in d:
        a = d["partial_vacancy"]
        t = defects.vacancies(t, rng, draw(rng, a.get("rate", 0.0)), sites=_sites(cell, a.get("sites")), partial=True)
    if "multi_vacancy" in d:
        a = d["multi_vacancy"]
        t = defects.multi_vacancy(t, rng, int(round(draw(rng, a.get("n", 1)))), int(round(draw(rng, a.get("size", 2)))),
                                  field, sites=_sites(cell, a.get("sites")))
    if "stone_wales" in d:
        t = defects.stone_wales(t, rng, int(round(draw(rng, d["stone_wales"].get("n", 1)))), field)
    if "adatom" in d:
        a = d["adatom"]
        t = defects.adatoms(t, rng, int(round(draw(rng, a.get("n", 1)))), atomic_number(draw(rng, a["element"])), field)
    if "hole" in d and rng.random() < draw(rng, d["hole"].get("prob", 0.0)):
        t = defects.hole(t, rng, draw(rng, d["hole"].get("radius_A", [3.0, 8.0])), field)
    if "edge" in d and rng.random() < draw(rng, d["edge"].get("prob", 0.0)):
        t = defects.edge(t, rng, field)
    if "strain" in d:
        a = d["strain"]
        t = defects.strain_field(t, rng, draw(rng, a.get("amplitude_A", 0.1)), field, kind=a.get("kind", "smooth"))
    if "contamination" in d and rng.random() < draw(rng, d["contamination"].get("prob", 0.0)):
        t = defects.contamination(t, rng, int(round(draw(rng, d["contamination"].get("n", 1)))), field)
    if d.get("support"):  # amorphous carbon under a crystal or single atoms
        sup = amorphous_support(*field, rng, density_per_A2=draw(rng, d["support"].get("density", 0.3)), margin_A=margin)
        sup.count *= np.float32(draw(rng, d["support"].get("weight", 0.5)))
        t = t.concat(sup)
    # ---- coordinate-level augmentation
    shear = draw(rng, aug.get("shear", 0.0))
    if shear:
        s = rng.normal(0, shear, 3)
        t = augment.affine(t, np.eye(2) + np.array([[s[0], s[1]], [0, s[2]]]), (field[0] / 2, field[1] / 2))
    t = augment.jiggle(t, rng, draw(rng, aug.get("jiggle_A", 0.0)))
    t = augment.scan_drift(t, rng, field, drift_A=draw(rng, aug.get("drift_A", 0.0)),
                           flyback_A=draw(rng, aug.get("flyback_A", 0.0)))
    # ---- imaging
    nz = _draw_dict(rng, cfg.noise)
    meta: dict[str, Any] = {"seed": int(seed), "structure": structure if not cfg.cif else cfg.cif,
                            "structure_params": params, "px_size_A": px, "mode": mode,
                            "rotation_deg": rot_deg, "thickness": thickness, "noise": nz}
    if mode == "STM":
        sp = _draw_dict(rng, cfg.stm)
        dt_prob = sp.pop("double_tip_prob", 0.0)
        if rng.random() < dt_prob:
            ang = rng.uniform(0, 2 * np.pi)
            r = rng.uniform(1.5, 4.0)
            sp["double_tip_offset_A"] = (r * math.cos(ang), r * math.sin(ang))
        stm = imaging.StmParams(**sp)
        meta["stm"] = dataclasses.asdict(stm)
        img = imaging.render_stm(t, (h, w), px, stm)
        if nz.get("ramp") or nz.get("bowl"):  # a tilted sample plane; the scanner's bow
            c = noise.contrast(img)
            if nz.get("ramp"):
                img = img + noise.ramp((h, w), rng, float(nz["ramp"]) * c)
            if nz.get("bowl"):
                img = img + noise.bowl((h, w), rng, float(nz["bowl"]) * c)
            meta["artefacts"] = {"contrast": c, "ramp": float(nz.get("ramp", 0)), "bowl": float(nz.get("bowl", 0))}
        img = noise.stm_noise(img, rng, sigma_A=nz.get("sigma_A", 0.02), line_offset_A=nz.get("line_offset_A", 0.03),
                              tip_change_prob=nz.get("tip_change_prob", 0.0))
        shifts = np.zeros(h, np.float32)
        if nz.get("jitter_px", 0):
            img, shifts = noise.line_jitter(img, rng, nz["jitter_px"])
    else:
        probe = imaging.ProbeParams(**_draw_dict(rng, cfg.probe))
        zexp = float(draw(rng, cfg.z_exponent))
        meta["probe"], meta["z_exponent"] = dataclasses.asdict(probe), zexp
        img = imaging.render_stem(t, (h, w), px, mode=mode, probe=probe, z_exponent=zexp)
        if thick is not None:
            img = img + _thick_support(thick, (h, w), px, rng, mode, probe, zexp)
            meta["support"] = {k: v for k, v in thick.items() if k != "support"}
        if any(k in nz for k in _REAL_KEYS):
            img, t = _real_artefacts(img, t, nz, rng, px, probe, meta)
        if nz.get("floor", 0):  # diffuse scattering from thick or amorphous material, detector floor
            img = img + np.float32(nz["floor"] * noise.robust_peak(img))
        if nz.get("background", 0):
            img = img + noise.background((h, w), rng, nz["background"] * float(img.std() or 1.0),
                                         nz.get("background_scale_px", w / 6))
        if nz.get("dose_e_per_A2"):
            img = noise.stem_counts(img, rng, nz["dose_e_per_A2"], px, nz.get("collection", 0.05),
                                    exact=bool(nz.get("exact_poisson", False)))
        img, shifts = noise.line_jitter(img, rng, nz.get("jitter_px", 0.0))
        if nz.get("streaks", 0):
            img, meta["streaks"] = noise.scan_streaks(img, rng, float(nz["streaks"]))
        img = noise.blur(img, nz.get("blur_px", 0.0))
        if nz.get("line_blur_px", 0):  # the detector's response along the fast scan: noise streaked along rows
            img = noise.line_blur(img, float(nz["line_blur_px"]))
        if nz.get("read_noise", 0):
            img = noise.read_noise(img, rng, nz["read_noise"] * float(img.std() or 1.0))
        img = noise.gain_offset(img, nz.get("gain", 1.0), nz.get("offset", 0.0))
    # ---- labels: columns inside the image, moved by the line jitter like their pixels.
    # STM sees only the surface layer: sub-surface host atoms (the metal of a TMD) are not
    # labelled, while sub-surface dopants and vacancies are, as their electronic halo shows
    seen = t.labelled
    if mode == "STM":
        seen = seen & (imaging.stm_top_layer(t) | (t.cls == DOPANT) | (t.cls == VACANCY))
    lab = t.subset(seen)
    if shifts.any():
        rows = np.clip(lab.xy[:, 1] / px, 0, h - 1)
        lab.xy[:, 0] += np.interp(rows, np.arange(h), shifts) * px
    inside = ((lab.xy[:, 0] >= -0.5 * px) & (lab.xy[:, 0] < (w - 0.5) * px)
              & (lab.xy[:, 1] >= -0.5 * px) & (lab.xy[:, 1] < (h - 0.5) * px))
    lab = lab.subset(inside)
    masks = _masks(lab, (h, w), px, cfg.labels)
    present = sorted({DEFECT_TYPES[c] for c in np.unique(lab.defect) if c > 0})
    meta["defect_types"] = present or ["pristine"]
    meta["n_atoms"] = {c: int((lab.cls == i).sum()) for i, c in enumerate(CLASSES) if i > 0}
    return SimResult(np.ascontiguousarray(img, dtype=np.float32), lab, masks, px, meta)


#: ``noise`` keys of the real-image artefacts applied between the render and the dose
_REAL_KEYS = ("ramp", "bowl", "patch", "thickness_var", "probe_tail")


def _thick_support(thick: dict, shape, px: float, rng, mode: str, probe, zexp: float) -> np.ndarray:
    """Render the thick amorphous carbon of `_single_atoms` (a count map through the probe)."""
    grid = Grid(shape, px, imaging.pad_px(px))
    counts = layered_support_map((grid.hp, grid.wp), grid.pad, px, rng, layers=thick["layers"],
                                 density_per_A2=thick["density"], thickness_var=thick["thickness_var"],
                                 roughness=thick["roughness"], roughness_scale_A=thick["roughness_scale_A"],
                                 support=thick["support"])
    if mode in ("HAADF", "ADF"):
        return imaging.render_count_map(counts, shape, px, Z=6, mode=mode, probe=probe, z_exponent=zexp)
    raise ValueError(f"support_layers renders in HAADF or ADF only, not {mode}")


def _real_artefacts(img: np.ndarray, t: AtomTable, nz: dict, rng, px: float, probe, meta: dict):
    """The artefacts of real HAADF images that come before the detector (issue 24), in the
    order the physics applies them: contamination patches (material, scattered), a smooth
    thickness change (multiplies the scattered signal), probe tails (spread all of it), then
    the additive backgrounds (ramp, bowl).  Heights are multiples of the clean render's
    1-99 % contrast.  Atoms under a thick patch (brightness > 5 where the patch is over
    half its height) are unlabelled: the patch hides them.  Returns (image, table)."""
    h, w = img.shape
    c = noise.contrast(img)
    rec: dict[str, Any] = {"contrast": c}
    pa = nz.get("patch")
    if pa:
        pa = pa if isinstance(pa, dict) else {"prob": float(pa)}
        if rng.random() < float(draw(rng, pa.get("prob", 1.0))):
            # the patches' own amorphous speckle, at the probe's scale and in clumps of a few
            # probe widths: one noise field for all of them
            grid = Grid((h, w), px, 0)
            P = imaging.probe_ft_filled(grid, probe)
            s = noise.band_limited_noise((h, w), rng, P * (1.0 + 3.0 * gaussian_ft(grid, 1.5)))
            total = np.zeros((h, w), np.float32)
            hide = np.zeros((h, w), bool)
            spots = []
            for _ in range(max(1, int(round(float(draw(rng, pa.get("n", 1))))))):
                area = float(draw(rng, pa.get("area", [0.05, 0.3])))
                b = float(draw(rng, pa.get("brightness", [1.0, 5.0])))
                tex = float(np.clip(draw(rng, pa.get("texture", 0.5)), 0.0, 1.0))
                m = noise.patch_mask((h, w), rng, area)
                body = (1.0 - tex) + tex * np.clip(1.0 + 0.6 * s, 0.0, None)
                total += np.float32(b * c) * m * body.astype(np.float32)
                if b > 5:
                    hide |= m > 0.5
                spots.append({"area": area, "brightness": b, "texture": tex})
            img = img + total
            rec["patches"] = spots
            if hide.any() and len(t):
                xi = np.clip(np.rint(t.xy[:, 0] / px).astype(int), 0, w - 1)
                yi = np.clip(np.rint(t.xy[:, 1] / px).astype(int), 0, h - 1)
                inside = (t.xy[:, 0] >= 0) & (t.xy[:, 1] >= 0) & (t.xy[:, 0] < w * px) & (t.xy[:, 1] < h * px)
                under = inside & hide[yi, xi]
                if under.any():
                    t = t.copy()
                    t.labelled = t.labelled & ~under
                    rec["hidden_atoms"] = int(under.sum())
    if nz.get("thickness_var", 0):
        scale = float(rng.uniform(0.25, 0.7)) * max(h, w)
        img = img * noise.thickness_field((h, w), rng, float(nz["thickness_var"]), scale)
    if nz.get("probe_tail", 0):
        sig_A = float(draw(rng, nz.get("probe_tail_sigma_A", [3.0, 8.0])))
        img = noise.probe_tail(img, float(nz["probe_tail"]), sig_A / px)
        rec["probe_tail_sigma_A"] = sig_A
    if nz.get("ramp", 0):
        img = img + noise.ramp((h, w), rng, float(nz["ramp"]) * c)
    if nz.get("bowl", 0):
        img = img + noise.bowl((h, w), rng, float(nz["bowl"]) * c)
    meta["artefacts"] = rec
    return img, t


_SUB = 16  # sub-pixel positions of the disc stencils


@functools.lru_cache(maxsize=16)
def _disc_stencils(r_px: float):
    """For each of _SUB x _SUB sub-pixel offsets of a centre, the (dy, dx) of the pixels whose
    centres lie within `r_px`, padded to one length L.  Returns (R, dy, dx, valid), arrays of
    shape (_SUB, _SUB, L); `valid` is False on the padding entries."""
    R = int(math.ceil(r_px)) + 1
    oy, ox = (a.ravel() for a in np.mgrid[-R:R + 1, -R:R + 1])
    f = (np.arange(_SUB) + 0.5) / _SUB - 0.5  # centre offset from the rounded pixel
    sets = [[np.nonzero((ox - fx) ** 2 + (oy - fy) ** 2 <= r_px * r_px)[0] for fx in f] for fy in f]
    L = max(len(k) for row in sets for k in row)
    dy = np.zeros((_SUB, _SUB, L), np.int32)
    dx = np.zeros((_SUB, _SUB, L), np.int32)
    valid = np.zeros((_SUB, _SUB, L), bool)
    for i in range(_SUB):
        for j in range(_SUB):
            k = sets[i][j]
            dy[i, j, :len(k)], dx[i, j, :len(k)], valid[i, j, :len(k)] = oy[k], ox[k], True
    return R, dy, dx, valid


def _masks(lab: AtomTable, shape, px: float, spec: dict) -> np.ndarray:
    kind = spec.get("kind", "disc")
    h, w = shape
    xy = lab.xy / px
    if kind == "gaussian":
        g = Grid(shape, px, imaging.pad_px(px))
        sig = float(spec.get("sigma_A", 0.3))
        K = gaussian_ft(g, sig) * (2 * np.pi * (sig / px) ** 2)  # unit peak
        out = np.zeros((len(CLASSES), h, w), np.float32)
        for c in (ATOM, DOPANT, VACANCY):
            m = lab.cls == c
            if m.any():
                out[c] = np.clip(render_points(g, xy[m], np.ones(m.sum()), K), 0, 1)
        out[0] = np.clip(1 - out[1:].sum(0), 0, 1)
        return out
    if kind != "disc":
        raise ValueError(f"label kind must be 'disc' or 'gaussian', not {kind!r}")
    R, sdy, sdx, svalid = _disc_stencils(round(float(spec.get("radius_A", 0.5)) / px, 3))
    order = np.argsort(lab.cls, kind="stable")  # ATOM < DOPANT < VACANCY: defects drawn last win
    p = xy[order]
    base = np.rint(p).astype(np.int32)
    q = np.clip(((p - base + 0.5) * _SUB).astype(np.int32), 0, _SUB - 1)  # sub-pixel bin
    P = R + 2  # padding of the map: every stencil pixel lands inside it
    wp = w + 2 * P
    qy, qx = q[:, 1], q[:, 0]
    flat = (base[:, 1:2] + P + sdy[qy, qx]) * wp + (base[:, 0:1] + P + sdx[qy, qx])
    flat[~svalid[qy, qx]] = 0  # padding entries write to pixel (0, 0) of the padding
    padded = np.zeros((h + 2 * P) * wp, np.int8)
    padded[flat.ravel()] = np.repeat(lab.cls[order], flat.shape[1])
    cls_map = padded.reshape(h + 2 * P, wp)[P:P + h, P:P + w]
    return (cls_map[None] == np.arange(len(CLASSES))[:, None, None]).astype(np.uint8)
