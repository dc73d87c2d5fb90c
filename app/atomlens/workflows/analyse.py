"""One micrograph from a file to a result: the entry that ``atomlens detect``, ``atomlens batch``,
the Process-folder dialog and the GUI's analysis worker all call.

:func:`load_micrograph` reads a file and fills in what it lacks from its name;
:class:`AnalysisSettings` holds the user's choices and checks them;
:func:`analyse_micrograph` runs the models on one frame with the micrograph's own calibration
and imaging mode and puts what was assumed about the image at the head of the notes.  The
readers the GUI calls itself (:func:`atomlens.io.load` with its warnings, the file-name hints, the
file-dialog filter, the unit table) are offered here too, so that it calls this layer only.
"""

from __future__ import annotations

import dataclasses
import warnings

from ..analysis.atoms import check_edge_margin
from ..analysis.calibration import Calibration
from ..analysis.defect_check import DEFAULT_MIN_DEFECT_SCORE
from ..analysis.pipeline import analyse_image
from ..io import LoadError, LoadWarning, load
from ..io.filename_hints import apply_filename_hints, assumption_notes, hints_from_name
from ..io.formats import file_dialog_filter
from ..io.units import units_nm

__all__ = ["AnalysisSettings", "LoadError", "LoadWarning", "REFINE_MODES", "SINGLE_ATOMS_NOTE", "analyse_micrograph",
           "wants_single_atom_model",
           "apply_filename_hints", "file_dialog_filter", "hints_from_name", "load", "load_micrograph", "units_nm"]

#: Sub-pixel refinements of the atom positions.
REFINE_MODES = ("centroid", "none", "gaussian")


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """What the user chose for an analysis (the options ``detect`` and ``batch`` share).

    Attributes
    ----------
    threshold : float
        Foreground probability threshold, 0 < threshold < 1.
    refine : {"centroid", "none", "gaussian"}
        Sub-pixel refinement of the positions.
    cam : bool
        Also run the defect-CAM model (defects and defect maps).
    material : str or None
        What the sample is (see :func:`atomlens.analysis.material.apply_material_hint`).
    edge_margin_px : float
        Leave out the atoms whose centre lies within this many pixels of an image edge (0: none).
    defect_check : bool
        Check vacancies and dopants against the lattice (see :mod:`atomlens.analysis.defect_check`).
    min_defect_score : float
        Leave out the defects scored below this (0..1).
    px_size_nm : float or None
        Pixel size (nm/px) for every image, overriding the files' own; None keeps theirs.
    """

    threshold: float = 0.5
    refine: str = "centroid"
    cam: bool = False
    material: str | None = None
    edge_margin_px: float = 0.0
    defect_check: bool = True
    min_defect_score: float = DEFAULT_MIN_DEFECT_SCORE
    px_size_nm: float | None = None

    @classmethod
    def split(cls, options: dict) -> tuple["AnalysisSettings", dict]:
        """(the settings among `options`, the other options): a dialog's option dict, for
        :func:`~atomlens.workflows.batch.process_paths` (``process_paths(..., settings=s, **rest)``).

        Parameters
        ----------
        options : dict
            Any options; those named as fields of this class are settings.

        Returns
        -------
        settings : AnalysisSettings
            The settings given, defaults for the others; not checked (see :meth:`check`).
        rest : dict
            The other options, in their order.

        Examples
        --------
        >>> s, rest = AnalysisSettings.split({"threshold": 0.4, "workers": 2})
        >>> s.threshold, s.refine, rest
        (0.4, 'centroid', {'workers': 2})
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return (cls(**{k: v for k, v in options.items() if k in names}),
                {k: v for k, v in options.items() if k not in names})

    def check(self) -> "AnalysisSettings":
        """Raise ValueError naming the first setting out of range; returns self."""
        if not 0 < float(self.threshold) < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.refine not in REFINE_MODES:
            raise ValueError(f"refine must be 'centroid', 'none' or 'gaussian', not {self.refine!r}")
        if not 0 <= float(self.min_defect_score) <= 1:
            raise ValueError(f"min_defect_score must be between 0 and 1, got {self.min_defect_score}")
        if self.px_size_nm is not None and not float(self.px_size_nm) > 0:
            raise ValueError(f"px_size_nm must be positive, got {self.px_size_nm}")
        check_edge_margin(self.edge_margin_px)
        return self


def load_micrograph(path, channel=None, keep_on_disk: bool = False):
    """Read a micrograph and fill in what the file lacks from its name.

    Parameters
    ----------
    path : str or Path
    channel : str, optional
        Channel or sub-image of a multi-image file.
    keep_on_disk : bool
        See :func:`atomlens.io.load`.

    Returns
    -------
    Micrograph
        With a mode or pixel size that the file lacks taken from its name ('..._5x5_Z_021.jpg'),
        recorded in ``mg.assumed`` and ``mg.notes``
        (:func:`atomlens.io.filename_hints.apply_filename_hints`).  The loader's warnings are
        not shown: their text is in ``mg.notes``.

    Raises
    ------
    atomlens.io.LoadError
        When the file cannot be read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        mg = load(path, channel=channel, keep_on_disk=keep_on_disk)
    apply_filename_hints(mg)
    return mg


#: The note of a result that was analysed again with the single-atom model starts with this.
SINGLE_ATOMS_NOTE = "single atoms on a support"


def wants_single_atom_model(result) -> bool:
    """Whether a result looks like single heavy atoms on a support rather than a lattice.

    Parameters
    ----------
    result : AnalysisResult
        The analysis by the model picked from the mode.

    Returns
    -------
    bool
        True when the network saw a Z-contrast image (an ABF image inverted is not one) and the
        columns it found form no lattice (:func:`atomlens.analysis.scene.is_lattice`).
    """
    from ..analysis.pipeline import _z_contrast
    from ..analysis.scene import is_lattice

    return _z_contrast(result.info) and not is_lattice(result.atoms.xy)


def analyse_micrograph(mg, predictor, *, frame: int = 0, settings: AnalysisSettings | None = None,
                       cam_predictor=None, image=None, model_given: bool = True,
                       override: str = "give --model to override", progress=None, cancel=None,
                       single_atoms=None):
    """Find and class the atoms of one frame of a micrograph.

    Parameters
    ----------
    mg : Micrograph
        The image, its calibration (``px_size_nm``, ``offset_nm``) and imaging mode.
    predictor : Predictor
        The atom-finding model (see :class:`atomlens.workflows.models.ModelCache`).
    frame : int
        Frame of a stack (0 for a single image).
    settings : AnalysisSettings, optional
        The user's choices (default: the defaults).
    cam_predictor : Predictor, optional
        The defect-CAM model, when defects are wanted.
    image : (H, W) array, optional
        The frame's pixels when the caller holds them already (the GUI's displayed frame);
        None reads ``mg.frame(frame)``.
    model_given : bool
        Whether the user chose the model (else it was picked from the mode, and an image
        without a mode gets a note that HAADF was assumed).
    override : str
        How to choose another model, for that note.
    progress : callable(fraction, message), optional
    cancel : object with ``is_set()``, optional
        Raises InterruptedError when set.
    single_atoms : callable() -> Predictor, optional
        The single-atom model (``stem-single-atoms``), loaded when first needed.  Given (the
        model was picked from the mode, not by the user), a Z-contrast image whose columns form
        no lattice (:func:`wants_single_atom_model`) is analysed again with it, and a note says
        so; the lattice images are left to `predictor`.

    Returns
    -------
    AnalysisResult
        Its ``info["notes"]`` start with what was assumed about the image
        (:func:`atomlens.io.filename_hints.assumption_notes`), as ``detect`` prints them.

    Raises
    ------
    ValueError
        When the image cannot be analysed (flat, tiny, no lattice...).
    IndexError
        When `frame` is not a frame of `mg`.
    """
    s = settings or AnalysisSettings()
    cal = Calibration.from_micrograph(mg, s.px_size_nm)
    img = mg.frame(frame) if image is None else image

    def run(pred, prog):
        return analyse_image(img, pred, px_size_nm=cal.px_x_nm, px_size_y_nm=cal.px_y_nm, offset_nm=cal.offset_nm,
                             mode=mg.mode, threshold=s.threshold, refine=s.refine, cam_predictor=cam_predictor,
                             frame=frame, material=s.material, edge_margin_px=s.edge_margin_px,
                             defect_check=s.defect_check, min_defect_score=s.min_defect_score, progress=prog,
                             cancel=cancel)

    res = run(predictor, progress)
    if single_atoms is not None and wants_single_atom_model(res):
        first = res.info.get("model")
        res = run(single_atoms(), progress)
        res.info["notes"].append(f"{SINGLE_ATOMS_NOTE}: the columns {first} found do not form a lattice, so the "
                                 f"image was analysed with {res.info.get('model')}, trained on single heavy atoms and "
                                 "clusters on amorphous carbon")
        res.info["routed_from"] = first
    assumed = assumption_notes(mg, px_size_given=s.px_size_nm is not None, model_given=model_given,
                               override=override)
    res.info["notes"] = assumed + res.info["notes"]
    return res
