"""One image from pixels to results: the step that ``atomlens detect``, the GUI's analysis
worker and batch processing share.

:func:`analyse_image` runs an atom-finding predictor (and optionally a defect-CAM predictor)
on one 2D image and returns an :class:`AnalysisResult`; the files written from it are
:mod:`atomlens.workflows.export`'s.  Predictors are duck-typed (anything with the
:class:`atomlens.nn.infer.Predictor` methods), so this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..io.modes import is_z_contrast, needs_inversion
from ..progress import sub_progress
from .calibration import Calibration
from .atoms import AtomList, check_edge_margin, find_atoms
from .cam import DefectList, snap_defects
from .defect_check import (CHECK_NOTE, DEFAULT_MIN_DEFECT_SCORE, SCORE_NOTE, check_atom_defects,
                           check_cam_defects, filter_by_score)
from .domain import domain_check, is_ood_note
from .lattice import median_nn_distance, stripes_note
from .material import SUGGEST_NOTE, apply_material_hint, suggest_material
from .scene import SCENE_NOTE, isolated_atoms

__all__ = ["AnalysisResult", "analyse_image", "RESULT_FORMAT"]

RESULT_FORMAT = "atomlens-result/1"

@dataclasses.dataclass
class AnalysisResult:
    """Everything one analysis of one image produced.

    Attributes
    ----------
    atoms : AtomList
        Atom columns in the image's own pixels.
    prob : (C, H, W) float32 or None
        Class probabilities in the image's pixels (None for images processed in strips).
    defects : DefectList or None
        Defects from the CAM model, if one was run.
    cam : (K, H, W) float32 or None
        Class activation maps in the image's pixels (non-negative).
    info : dict
        ``px_size_A`` used, ``notes`` (what was assumed, warnings), ``device``, ``model``,
        ``min_distance_px``, ``mode`` (of the image, as given), ``inverted``, with a CAM model
        ``cam_model``, and for a calibrated Z-contrast image ``material_suggestion`` (the note of
        :func:`atomlens.analysis.material.suggest_material`, or None; shown while no material is set).
    px_size_nm : float or None
        Calibration of the image (None: uncalibrated; the nm columns stay empty).
    offset_nm : (float, float)
        Physical position of pixel (0, 0).
    px_size_y_nm : float or None
        Pixel height (nm) where it differs from ``px_size_nm``; None: square pixels.  Every
        conversion to nm goes through :attr:`calibration`.
    threshold, refine : the detection settings used for `atoms`.
    edge_margin_px : float
        Atoms closer than this to an edge of the image were left out (0: none).
    material : str or None
        Material hint applied to the classes (:mod:`atomlens.analysis.material`), if any.
    frame : int
        Frame index within a stack (0 for a single image).
    shape : (H, W)
    """

    atoms: AtomList
    prob: np.ndarray | None
    defects: DefectList | None
    cam: np.ndarray | None
    info: dict
    px_size_nm: float | None
    offset_nm: tuple
    threshold: float
    refine: str
    frame: int
    shape: tuple
    material: str | None = None
    edge_margin_px: float = 0.0
    px_size_y_nm: float | None = None

    @property
    def calibration(self) -> Calibration:
        """The image's :class:`~atomlens.analysis.calibration.Calibration` (pixel sizes, offset)."""
        return Calibration(self.px_size_nm, self.px_size_y_nm if self.px_size_nm is not None else None,
                           self.offset_nm)

    @property
    def class_names(self) -> tuple:
        """The names of the atom classes, indexed by ``atoms.cls`` (``atoms.class_names``).

        Returns
        -------
        tuple of str
            Background first, e.g. ``("background", "atom", "dopant", "vacancy")``.
        """
        return self.atoms.class_names

    def counts(self) -> dict:
        """Number of atoms per class name (classes with none are listed with 0)."""
        names = self.atoms.names()
        return {c: names.count(c) for c in self.atoms.class_names[1:]}

    def rederive(self, threshold: float, refine: str | None = None, image=None, material="keep",
                 edge_margin_px: float | None = None) -> AtomList:
        """Atoms from the cached probabilities at another threshold (and refinement, and
        material hint: a name, None for none, "keep" for the current one, and edge margin:
        None keeps the current one), without running the network; also updates `atoms`,
        `threshold`, `refine`, `material` and `edge_margin_px`.

        `image` is the image as the network saw it (an ABF image inverted); :meth:`needs_image`
        says when it is required.  Raises ValueError when no probabilities were kept (an image
        processed in strips) or the image is missing.

        The notes written after detection (single atoms, vacuum, material hint, edge margin,
        defect check, score filter) are replaced by the new ones; with an image, the domain
        check (where the result has one) is redone too; ``info["median_nn_px"]`` is updated.

        Parameters
        ----------
        threshold : float
            Foreground probability threshold, 0..1 (see :func:`atomlens.analysis.atoms.find_atoms`).
        refine : {"centroid", "none", "gaussian"}, optional
            Sub-pixel refinement; None keeps the current one.
        image : (H, W) array_like, optional
            The image as the network saw it (:meth:`network_image`); converted to float32.
        material : str or None, optional
            A name of :data:`atomlens.analysis.material.MATERIALS`, None (or "") for none,
            "keep" for the current one.
        edge_margin_px : float, px, optional
            Leave out atoms closer than this to an edge; None keeps the current margin.

        Returns
        -------
        AtomList
            The new atoms, in the image's pixels (also stored as :attr:`atoms`).

        Raises
        ------
        ValueError
            When no probabilities were kept, or `image` is None while :meth:`needs_image` says
            it is needed.
        """
        if self.prob is None:
            raise ValueError("this result kept no probability maps (image processed in strips): run again")
        refine = refine or self.refine
        material = self.material if material == "keep" else (material or None)
        if image is None and self.needs_image(refine, material):
            raise ValueError("re-deriving these atoms needs the image: " + (
                "Gaussian refinement" if refine == "gaussian" else "the material hint" if material
                else "the test for single atoms on a support") + " reads it")
        img = None if image is None else np.asarray(image, np.float32)
        atoms = find_atoms(self.prob, threshold=threshold, min_distance_px=self.info.get("min_distance_px"),
                           refine=refine, image=img, class_names=self.atoms.class_names)
        margin = self.edge_margin_px if edge_margin_px is None else float(edge_margin_px)
        atoms, added = _after_detection(atoms, img, material, margin, self.shape, self.info)
        self.info["notes"] = [n for n in self.info.get("notes", []) if not n.startswith(_DERIVED_NOTES)] + added
        if img is not None and self.info.get("px_size_A") and "domain" in self.info:
            # "few atoms found" depends on the atoms: checked again with the ones kept now
            ood, self.info["domain"] = domain_check(img, self.info["px_size_A"], self.prob, atoms.xy,
                                                    limits=self.info.get("domain_limits"))
            self.info["notes"] = [n for n in self.info["notes"] if not is_ood_note(n)] + ood
        self.info["median_nn_px"] = _finite_or_none(median_nn_distance(atoms.xy))
        self.atoms = atoms
        self.threshold, self.refine, self.material = float(threshold), refine, material
        self.edge_margin_px = margin
        return self.atoms

    def network_image(self, image):
        """`image` (the frame as recorded) as the network saw it: inverted for a dark-atom image
        shown to a bright-atom model (``info["inverted"]``), else as it is; what
        :meth:`rederive` reads.

        Parameters
        ----------
        image : (H, W) numpy.ndarray
            The frame this result was computed from, as recorded.

        Returns
        -------
        (H, W) numpy.ndarray
            ``-image`` (a new array) when the analysis inverted it, else `image` itself.
        """
        return -image if self.info.get("inverted") else image

    def needs_image(self, refine: str | None = None, material="keep") -> bool:
        """Whether :meth:`rederive` with these settings needs the image: Gaussian refinement,
        a material hint and a Z-contrast image's test for single atoms on a support read it.

        Parameters
        ----------
        refine : str, optional
            The refinement :meth:`rederive` will use; None: the current one.
        material : str or None, optional
            The material hint it will use; "keep" (the default): the current one.

        Returns
        -------
        bool
            True for Gaussian refinement, a material hint, a result whose network saw
            Z-contrast (HAADF, ADF), or one analysed with the defect check (which reads the
            image too).
        """
        material = self.material if material == "keep" else material
        return ((refine or self.refine) == "gaussian" or bool(material) or _z_contrast(self.info)
                or bool(self.info.get("defect_check")))

    def to_dict(self) -> dict:
        """JSON-friendly summary: settings, calibration, counts, atoms and defects."""
        return {
            "format": RESULT_FORMAT,
            "model": self.info.get("model"), "cam_model": self.info.get("cam_model"),
            "device": self.info.get("device"), "bf16": bool(self.info.get("bf16", False)),
            "px_size_A_used": self.info.get("px_size_A"),
            "tta": bool(self.info.get("tta", False)), "views": self.info.get("views"),
            "notes": list(self.info.get("notes", [])),
            "domain": self.info.get("domain"),
            "threshold": self.threshold, "refine": self.refine, "material": self.material,
            "edge_margin_px": self.edge_margin_px, "frame": self.frame,
            "defect_check": bool(self.info.get("defect_check", False)),
            "min_defect_score": self.info.get("min_defect_score"),
            "shape": list(self.shape), "px_size_nm": self.px_size_nm,
            **({} if self.calibration.square else {"px_size_y_nm": self.calibration.y_nm}),
            "offset_nm": list(self.offset_nm),
            "counts": self.counts(),
            "atoms": _with_nm(self.atoms.to_dict(), self.calibration),
            "defects": (_with_nm(self.defects.to_dict(), self.calibration) if self.defects is not None else None),
        }

    def write_tables(self, atoms_csv, defects_csv=None) -> None:
        """Write the atom table (and, when there are defects and `defects_csv` is given, the
        defect table) with this result's calibration, atomically.

        Parameters
        ----------
        atoms_csv : str or os.PathLike
            Target of ``x,y,class,score,x_nm,y_nm`` (px, and nm through :attr:`calibration`;
            the nm columns empty for an uncalibrated image).
        defects_csv : str or os.PathLike, optional
            Target of ``x,y,type,score,x_nm,y_nm``; not written when None or when the result
            has no defect list (an empty list is written, as a header alone).

        Raises
        ------
        OSError
            If a file cannot be written.
        """
        cal = self.calibration
        self.atoms.to_csv(atoms_csv, px_size_nm=cal.px_x_nm, offset_nm=cal.offset_nm, px_size_y_nm=cal.px_y_nm)
        if defects_csv is not None and self.defects is not None:
            self.defects.to_csv(defects_csv, px_size_nm=cal.px_x_nm, offset_nm=cal.offset_nm,
                                px_size_y_nm=cal.px_y_nm)


def _with_nm(d: dict, cal: Calibration) -> dict:
    xs, ys = cal.to_nm(d["x"], d["y"])
    d["x_nm"] = None if xs is None else xs.tolist()
    d["y_nm"] = None if ys is None else ys.tolist()
    return d


def analyse_image(image, predictor, *, px_size_nm=None, offset_nm=(0.0, 0.0), mode=None, px_size_y_nm=None,
                  threshold: float = 0.5, refine: str = "centroid", cam_predictor=None, frame: int = 0,
                  material: str | None = None, edge_margin_px: float = 0.0, progress=None,
                  cancel=None, defect_check: bool = True,
                  min_defect_score: float = DEFAULT_MIN_DEFECT_SCORE) -> AnalysisResult:
    """Find and class the atoms of one image (and its defects, given a CAM predictor).

    Parameters
    ----------
    image : (H, W) array
    predictor : :class:`atomlens.nn.infer.Predictor` of a segmentation model
    px_size_nm : float or None
        Pixel size (nm/px); None estimates the scale from the lattice (see ``info["notes"]``).
    offset_nm : (float, float)
        Physical position (nm) of the centre of pixel (0, 0).
    px_size_y_nm : float or None
        Pixel height (nm) for non-square pixels (None: square); only the nm positions use it.
    mode : str or None
        Imaging mode of the image; dark-atom modes (ABF, BF) are inverted for bright-atom models.
    threshold, refine : passed to :meth:`Predictor.detect`.
    cam_predictor : Predictor of a ``cam`` model, optional
    material : str, optional
        What the sample is (one of :data:`atomlens.analysis.material.MATERIALS`): the classes
        that cannot be right in that material are corrected (see
        :func:`atomlens.analysis.material.apply_material_hint`); ``info["notes"]`` says how many.
        Without one, a calibrated Z-contrast image whose columns look like a 2H TMD gets a note
        suggesting it (:func:`atomlens.analysis.material.suggest_material`).
    edge_margin_px : float
        Leave out the atoms whose centre lies closer than this to an edge of the image (in its
        own pixels; 0 keeps every column, those cut by the edge included).
    progress : callable(fraction, message), optional
    cancel : object with ``is_set()``, optional; raises InterruptedError when set.
    defect_check : bool
        Check the vacancies and dopants (atom classes and CAM defects) against the lattice and
        the image (:mod:`atomlens.analysis.defect_check`); ``info["notes"]`` says how many went.
    min_defect_score : float
        Leave out the defects scored below this (0..1): vacancies and CAM defects dropped,
        dopants called atom (:func:`atomlens.analysis.defect_check.filter_by_score`; 0 keeps all).
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected one 2D image, got shape {img.shape}")
    edge_margin_px = check_edge_margin(edge_margin_px or 0.0)  # before the network runs
    notes = []
    inverted = needs_inversion(mode, predictor.card.get("mode"))
    if inverted:
        img = -img
        notes.append(f"{mode} contrast inverted for the {predictor.card['name']} model")
    share = 0.8 if cam_predictor is not None else 1.0

    atoms, prob, info = predictor.detect(img, px_size_nm, threshold=threshold, refine=refine,
                                         progress=sub_progress(progress, 0.0, share), cancel=cancel)
    info = dict(info)
    info["notes"] = notes + list(info.get("notes", []))
    if info.get("px_size_A"):  # an image the model may not know: said in the notes (figures: info["domain"])
        info["domain_limits"] = predictor.card.get("domain")
        ood, info["domain"] = domain_check(img, info["px_size_A"], prob, atoms.xy, limits=info["domain_limits"])
        info["notes"] += ood
    nn = median_nn_distance(atoms.xy)
    stripes = stripes_note(img, atoms.xy, info.get("px_size_A"), nn_px=nn)
    if stripes:
        info["notes"].append(stripes)
    info["inverted"] = inverted
    info["mode"] = mode
    info["model_mode"] = predictor.card.get("mode")
    # kept even when a material is given: shown whenever the hint is taken off again
    if _z_contrast(info) and px_size_nm is not None:  # an estimated scale cannot tell h-BN from a TMD
        info["material_suggestion"] = suggest_material(atoms, img, info.get("px_size_A"))
    info["defect_check"], info["min_defect_score"] = bool(defect_check), _check_score(min_defect_score)
    found = atoms
    atoms, added = _after_detection(atoms, img, material, edge_margin_px, img.shape, info)
    info["notes"] += added
    # the overlays size their markers from it: the atoms kept, as after a re-derivation
    info["median_nn_px"] = _finite_or_none(nn if atoms is found else median_nn_distance(atoms.xy))
    defects = cam = None
    if cam_predictor is not None:
        if cancel is not None and cancel.is_set():
            raise InterruptedError("cancelled")
        defects, cam, cinfo = cam_predictor.defects(img, px_size_nm, progress=sub_progress(progress, share, 1 - share), cancel=cancel)
        cam = cam.astype(np.float32, copy=False)
        info["cam_model"] = cinfo.get("model")
        # the CAM peak is only as sharp as the CAM's grid: pin point defects to their column
        defects = snap_defects(defects, atoms, max_dist_px=3.0 / info["px_size_A"], image=img)
        defects, cam_notes = _checked_cam_defects(defects, atoms, img, info)
        info["notes"] += cam_notes
    if progress:
        progress(1.0, f"{len(atoms)} atoms")
    return AnalysisResult(atoms=atoms, prob=prob, defects=defects, cam=cam, info=info,
                          px_size_nm=None if px_size_nm is None else float(px_size_nm),
                          offset_nm=tuple(float(v) for v in offset_nm), threshold=float(threshold),
                          refine=refine, frame=int(frame), shape=tuple(img.shape), material=material or None,
                          edge_margin_px=edge_margin_px,
                          px_size_y_nm=None if (px_size_nm is None or px_size_y_nm is None
                                                or float(px_size_y_nm) == float(px_size_nm)) else float(px_size_y_nm))


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


EDGE_NOTE = "edge margin"
#: The notes that :func:`_after_detection` writes (a re-derivation replaces them).
VACUUM_NOTE = "vacuum"
#: An atom where the local contrast (:func:`atomlens.analysis.background.local_contrast`) is below this
#: share of the image's median is in vacuum (beyond a film's edge, in a hole): left out.  Chosen
#: on the labelled Pt-on-carbon images (validation F1 0.22 -> 0.40; none of the clean real
#: lattices loses a column at 0.85), so their figure with it is not a transfer figure.
VACUUM_CONTRAST = 0.7
_DERIVED_NOTES = (SCENE_NOTE, VACUUM_NOTE, "material hint", SUGGEST_NOTE, EDGE_NOTE, CHECK_NOTE, SCORE_NOTE)
#: The prefix of the notes on the CAM defects (not re-derived: the CAM is not run again).
CAM_NOTE = "CAM "


def _check_score(s) -> float:
    s = float(s)
    if not (math.isfinite(s) and 0 <= s <= 1):
        raise ValueError(f"the minimum defect score must be between 0 and 1, not {s!r}")
    return s


def _checked_cam_defects(defects, atoms, img, info):
    """The CAM defects after the lattice check (``info["defect_check"]``) and the score
    filter (``info["min_defect_score"]``), and the notes saying how many went."""
    notes = []
    if info.get("defect_check"):
        defects, note = check_cam_defects(defects, atoms, img, z_contrast=_z_contrast(info))
        if note:
            notes.append(CAM_NOTE + note)
    s = float(info.get("min_defect_score") or 0.0)
    _, defects, n = filter_by_score(None, defects, s)
    if n:
        notes.append(f"{CAM_NOTE}{SCORE_NOTE}: {n} CAM defects scored below {s:g} left out")
    return defects, notes


def _after_detection(atoms, img, material, margin_px, shape, info):
    """The steps after finding the atoms, shared by :func:`analyse_image` and
    :meth:`AnalysisResult.rederive`: in a Z-contrast image whose columns form no lattice,
    single atoms on a support (:func:`atomlens.analysis.scene.isolated_atoms`); the material
    hint (without one, the suggestion found when the image was analysed,
    ``info["material_suggestion"]``); the defect check (``info["defect_check"]``,
    :func:`atomlens.analysis.defect_check.check_atom_defects`: vacancies off the lattice
    dropped, in Z-contrast images dopants that do not stand out called atom); the defect-score
    filter (``info["min_defect_score"]``); then the edge margin.  Returns (atoms, the notes
    they add)."""
    notes = []
    if img is not None and _z_contrast(info):
        atoms, note = isolated_atoms(atoms, img, info.get("px_size_A"))
        if note:
            notes.append(note)
        atoms, note = _vacuum_atoms(atoms, img, info.get("px_size_A"), info)
        if note:
            notes.append(note)
    if material:
        atoms, note = _material_hint(atoms, img, material, info)
        notes.append(note)
    elif info.get("material_suggestion"):
        notes.append(info["material_suggestion"])
    if info.get("defect_check") and img is not None:
        atoms, note = check_atom_defects(atoms, img, z_contrast=_z_contrast(info))
        if note:
            notes.append(note)
    s = float(info.get("min_defect_score") or 0.0)
    atoms, _, n = filter_by_score(atoms, None, s)
    if n:
        notes.append(f"{SCORE_NOTE}: {n} vacancies and dopants scored below {s:g} left out (dopants called atom)")
    atoms, note = _edge_margin(atoms, shape, margin_px)
    if note:
        notes.append(note)
    return atoms, notes


def _vacuum_atoms(atoms, img, px_A, cache=None):
    """The atoms of a Z-contrast image that do not sit in vacuum (local contrast below
    VACUUM_CONTRAST of the image's median), and a note saying how many went.

    The image's local contrast over its median is kept in `cache` (a result's info) under
    ``"_contrast_ratio"``, so re-deriving the atoms (the threshold slider) does not compute it
    again."""
    if not len(atoms) or not px_A:
        return atoms, None
    ratio = None if cache is None else cache.get("_contrast_ratio")
    if ratio is None or ratio.shape != img.shape:
        from .background import contrast_floor, floor_sample, local_contrast

        _hp, r, unit = local_contrast(img, float(px_A))
        floor = contrast_floor(floor_sample(r, unit)) / unit if unit > 0 else 0.0
        ratio = r / np.float32(floor) if floor > 0 else np.full(img.shape, np.inf, np.float32)
        if cache is not None:
            cache["_contrast_ratio"] = ratio
    iy = np.clip(np.round(atoms.y).astype(int), 0, img.shape[0] - 1)
    ix = np.clip(np.round(atoms.x).astype(int), 0, img.shape[1] - 1)
    keep = ratio[iy, ix] >= VACUUM_CONTRAST
    if keep.all():
        return atoms, None
    return atoms.subset(keep), (f"{VACUUM_NOTE}: {int((~keep).sum())} atoms where the image holds no contrast "
                                f"(below {VACUUM_CONTRAST:g}x its median local contrast) left out")


def _edge_margin(atoms, shape, margin_px):
    """The atoms at least `margin_px` from the edges, and a note saying how many were left out."""
    kept = atoms.away_from_edges(shape, margin_px)
    if not margin_px:
        return kept, None
    return kept, f"{EDGE_NOTE} {margin_px:g} px: {len(atoms) - len(kept)} columns near the image edges left out"


def _contrast_mode(info) -> str:
    """The contrast the network saw: the model's mode, or the image's when it was inverted."""
    if info.get("inverted"):
        return (info.get("mode") or "ABF").upper()  # an ABF/BF image: not Z-contrast either
    return (info.get("model_mode") or "HAADF").upper()


def _z_contrast(info) -> bool:
    return is_z_contrast(_contrast_mode(info))


def _material_hint(atoms, img, material, info):
    """The material hint for a Z-contrast model's atoms (an STM model's are left alone)."""
    mode = _contrast_mode(info)
    if not is_z_contrast(mode):
        return atoms, (f"material hint {material} not applied: it reads column intensities of "
                       f"Z-contrast images (HAADF, ADF), and this is {mode}")
    return apply_material_hint(atoms, img, material, px_size_A=info.get("px_size_A"))


