"""Which model for an image, and the loaded models kept between images.

:func:`default_model_name` is the one rule that picks the bundled model for an imaging mode;
``atomlens detect``, ``atomlens batch``, the Analysis dock and the Retrain dialog all ask it.
:class:`ModelCache` keeps loaded :class:`~atomlens.nn.infer.Predictor` objects between images
and runs an analysis with a fall-back to the CPU when the GPU fails
(:meth:`ModelCache.run_with_fallback`).  torch is imported only when the first model loads.

The model bundles as the user manages them (list, read, rename, delete, import, export) and the
CPU arithmetic choice are those of :mod:`atomlens.nn.bundle` and :mod:`atomlens.nn.precision`,
offered here so that the command line and the GUI call this layer only.
"""

from __future__ import annotations

from ..io.modes import mode_family
from ..nn.bundle import (BundleError, delete_bundle, export_bundle, import_bundle, list_bundles, read_card,
                         rename_bundle, user_models_dir)
from ..nn.bundle import _check_name as check_model_name
from ..nn.precision import cpu_bf16_choice

__all__ = ["CAM_MODEL", "SINGLE_ATOM_MODEL", "SPM_MODEL", "STEM_MODEL", "BundleError", "single_atom_model_for", "ModelCache", "check_model_name", "cpu_bf16_choice",
           "default_model_name", "delete_bundle", "export_bundle", "import_bundle", "is_cuda_failure", "list_bundles",
           "read_card", "recipe_name_for_mode", "rename_bundle", "user_models_dir"]

#: The bundled atom-finding model for microscope images (HAADF, ADF, ABF...).
STEM_MODEL = "stem-haadf"
#: The bundled atom-finding model for scanning-probe images (STM, SPM, AFM).
SPM_MODEL = "stm-topo"
#: The bundled defect-CAM model.
CAM_MODEL = "defect-cam"
#: The bundled model for single heavy atoms on a support, to which a Z-contrast image whose
#: columns form no lattice is handed when the model was picked from the mode
#: (:func:`atomlens.workflows.analyse.analyse_micrograph`).
SINGLE_ATOM_MODEL = "stem-single-atoms"


def single_atom_model_for(model, mode, available=None) -> str | None:
    """The single-atom model to try after `model` on an image of `mode`, or None.

    Parameters
    ----------
    model : str
        The atom-finding model picked from the mode.
    mode : str or None
        The image's imaging mode.
    available : iterable of str, optional
        The installed models (default: :func:`list_bundles`'s names).

    Returns
    -------
    str or None
        :data:`SINGLE_ATOM_MODEL` for the microscope model (``stem-haadf``) when it is installed;
        None otherwise (a scanning-probe image, a model the user chose).
    """
    if str(model) != STEM_MODEL or mode_family(mode) != "stem":
        return None
    names = [n for n, _p, _o in list_bundles()] if available is None else list(available)
    return SINGLE_ATOM_MODEL if SINGLE_ATOM_MODEL in names else None


def default_model_name(mode, available=None) -> str | None:
    """The atom-finding model for images of imaging `mode`.

    Parameters
    ----------
    mode : str or None
        The image's imaging mode (any case; None or unknown: a microscope image).
    available : iterable of str, optional
        The names of the models installed.  None: the bundled name is returned as it is (a
        missing model is reported when it is loaded).

    Returns
    -------
    str or None
        ``"stm-topo"`` for a scanning-probe mode (STM, SPM, AFM), ``"stem-haadf"`` for any
        other.  With `available`: that model if installed, else (for a scanning-probe
        image) ``stem-haadf``, else the first installed model; None when none is installed.

    Examples
    --------
    >>> default_model_name("AFM"), default_model_name("haadf"), default_model_name(None)
    ('stm-topo', 'stem-haadf', 'stem-haadf')
    >>> default_model_name("STM", ["stem-haadf", "my-model"])
    'stem-haadf'
    """
    want = [SPM_MODEL, STEM_MODEL] if mode_family(mode) == "spm" else [STEM_MODEL]
    if available is None:
        return want[0]
    names = list(available)
    for n in want:
        if n in names:
            return n
    return names[0] if names else None


def recipe_name_for_mode(mode) -> str:
    """The bundled training recipe (``resources/recipes/<name>.json``) for a model of `mode`:
    the recipe of :func:`default_model_name`'s model.

    Parameters
    ----------
    mode : str or None
        An imaging mode (any case; None or unknown: a microscope image).

    Returns
    -------
    str
        The recipe's name, without folder or ``.json`` (whether the file exists is not checked).

    Examples
    --------
    >>> recipe_name_for_mode("stm"), recipe_name_for_mode("ABF")
    ('stm-topo', 'stem-haadf')
    """
    return default_model_name(mode)


def is_cuda_failure(exc: BaseException) -> bool:
    """True for the RuntimeError torch raises when the GPU fails (out of memory, a lost device,
    a kernel that is missing for this card): the analysis can run again on the CPU.

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    bool
        True for a RuntimeError (or subclass, e.g. torch's OutOfMemoryError) whose message
        mentions CUDA, in any case.

    Examples
    --------
    >>> is_cuda_failure(RuntimeError("CUDA out of memory")), is_cuda_failure(ValueError("cuda"))
    (True, False)
    """
    return isinstance(exc, RuntimeError) and "cuda" in str(exc).lower()


class ModelCache:
    """Loaded predictors, kept between images, keyed by (model, device, CPU arithmetic).

    Parameters
    ----------
    tta, single_view : bool
        Given to every :class:`~atomlens.nn.infer.Predictor` made here (see its docs).
    remember_failures : bool
        A model that failed to load fails again at once (batch processing: a bad bundle
        fails its files, not the batch, and is not loaded again for each).
    before_load, after_load : callable(), optional
        Called before the first model is loaded (the GUI preloads torch's libraries) and
        after each load (the GUI then reports the devices torch sees).

    Examples
    --------
    ::

        cache = ModelCache()
        pred = cache.get("stem-haadf", "auto")
        result, note = cache.run_with_fallback(lambda dev: analyse(cache.get("stem-haadf", dev)), "auto")
    """

    def __init__(self, *, tta: bool = False, single_view: bool = False, remember_failures: bool = False,
                 before_load=None, after_load=None):
        self.tta, self.single_view = bool(tta), bool(single_view)
        self.remember_failures = bool(remember_failures)
        self.before_load, self.after_load = before_load, after_load
        self.predictors: dict = {}
        #: The GPU failed once with device "auto": "auto" means the CPU from then on.
        self.gpu_failed = False

    def __contains__(self, name) -> bool:
        return any(k[0] == str(name) for k in self.predictors)

    def get(self, model, device: str = "auto", cpu_bf16: str | None = None):
        """The Predictor of `model` (a bundle name or folder) on `device`, loaded on first use.

        Parameters
        ----------
        model : str or Path
        device : {"auto", "cpu", "cuda", "mps"}
            "auto" is the CPU after the GPU has failed once (:attr:`gpu_failed`).
        cpu_bf16 : {"auto", "on", "off"} or None
            bf16 arithmetic on the CPU (None: the ``ATOMLENS_CPU_BF16`` environment variable).

        Returns
        -------
        Predictor

        Raises
        ------
        BundleError, RuntimeError, OSError
            When the model cannot be loaded (or the device used).
        """
        device = "cpu" if (self.gpu_failed and device == "auto") else str(device)
        key = (str(model), device, cpu_bf16)
        if key not in self.predictors:
            if self.before_load is not None:
                self.before_load()
            from ..nn.infer import Predictor

            try:
                self.predictors[key] = Predictor(model, device=device, tta=self.tta, single_view=self.single_view,
                                                 cpu_bf16=cpu_bf16)
            except Exception as exc:  # noqa: BLE001 - kept (when asked) and raised again
                if not self.remember_failures:
                    raise
                self.predictors[key] = exc
            if self.after_load is not None:
                self.after_load()
        got = self.predictors[key]
        if isinstance(got, Exception):
            raise got
        return got

    def drop_device(self, device: str) -> None:
        """Forget the models loaded on `device` (and free the GPU's cached memory).

        Parameters
        ----------
        device : str
            The device of the cache keys, as :meth:`get` recorded it ("auto" stays "auto"
            until the GPU has failed, then it is "cpu").

        Notes
        -----
        Never raises; the CUDA cache is emptied only where torch is installed and sees a GPU.
        """
        for key in [k for k in self.predictors if k[1] == device]:
            del self.predictors[key]
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - nothing to free
            pass

    def run_with_fallback(self, run, device: str = "auto", on_fallback=None):
        """``run(device)``, and on a GPU failure ``run("cpu")`` once.

        Parameters
        ----------
        run : callable(str) -> object
            Does the work with the models of :meth:`get` on the device it is given.
        device : str
            The device asked for.
        on_fallback : callable(str), optional
            Told (with the note) before the run on the CPU starts.

        Returns
        -------
        (object, str or None)
            What `run` returned, and the note to show when it ran on the CPU instead
            (None when it did not fall back).  With device "auto" the CPU is used from then on.
        """
        dev = "cpu" if (self.gpu_failed and device == "auto") else device
        try:
            return run(dev), None
        except RuntimeError as exc:
            if not is_cuda_failure(exc) or dev == "cpu":
                raise
            note = f"the GPU failed ({str(exc).splitlines()[0][:160]}); ran on the CPU instead"
            self.gpu_failed = self.gpu_failed or device == "auto"
            self.drop_device(dev)
            if on_fallback is not None:
                on_fallback(note)
            return run("cpu"), note
