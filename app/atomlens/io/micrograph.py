"""The :class:`Micrograph` container and the loader's error and warning types."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Micrograph", "LoadError", "LoadWarning"]


class LoadError(Exception):
    """A file could not be read as a micrograph.

    The message is written for the user: it names the file and says what is wrong and,
    where possible, what to do about it.  It never needs a traceback to be understood.
    """


class LoadWarning(UserWarning):
    """Something was repaired or assumed while loading (NaNs replaced, units assumed...)."""


@dataclasses.dataclass(eq=False)
class Micrograph:
    """An image (or a stack of images) with its spatial calibration.

    Attributes
    ----------
    data : ndarray or dask array, float32, shape (H, W) or (N, H, W)
        Intensities.  Row 0 is the top of the image.  Very large stacks are kept lazy
        (a memory map or a dask array); use :meth:`frame` to get one frame as an ndarray.
    px_size_nm : float or None
        Size of one pixel along x (columns) in nm, or None when the file has no usable
        spatial calibration.
    offset_nm : (float, float)
        Physical position (x, y) of the centre of pixel (0, 0), in nm.
    mode : str or None
        Imaging mode or signal type where known: ``HAADF``, ``ADF``, ``ABF``, ``BF``,
        ``DF``, ``iDPC``, ``STM``...
    metadata : dict
        The file's original metadata (nested dicts), as the reader found it.
    path : Path or None
        Where the data came from.
    px_size_y_nm : float or None
        Pixel size along y (rows) in nm, when it differs from ``px_size_nm``.
    channel : str or None
        The channel or sub-image that was read, for files that hold several.
    channels : list of str
        All channels or sub-images the file offers (pass one to ``load(channel=...)``).
    units_original : str or None
        The length unit as the file spelled it, before normalisation to nm.
    value_units : str or None
        Units of the intensity values (``m`` for STM height, ``A`` for current, ``counts``...).
    notes : list of str
        Human-readable remarks about what the loader repaired or assumed.
    value_transform : (offset, scale) or None
        What the loader did to the file's values to keep their contrast in float32:
        ``data = (raw - offset) / scale`` (see :func:`atomlens.io.cleaning.float32_plan`);
        None for a plain cast.  Also recorded in ``metadata["AtomLens"]``.
    assumed : dict
        What was not in the file's metadata but assumed (see
        :func:`atomlens.io.filename_hints.apply_filename_hints`): ``"mode"`` / ``"px_size"`` ->
        a sentence saying where it came from (e.g. the file name).  Setting the pixel size by
        hand removes ``"px_size"``.
    """

    data: Any
    px_size_nm: float | None = None
    offset_nm: tuple[float, float] = (0.0, 0.0)
    mode: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    path: Path | None = None
    px_size_y_nm: float | None = None
    channel: str | None = None
    channels: list[str] = dataclasses.field(default_factory=list)
    units_original: str | None = None
    value_units: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    value_transform: tuple | None = None
    assumed: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.px_size_nm is not None and self.px_size_y_nm is None:
            self.px_size_y_nm = self.px_size_nm

    # ------------------------------------------------------------------ shape helpers
    @property
    def is_stack(self) -> bool:
        """True for (N, H, W) data: a tilt or time series, a movie or a focal series."""
        return len(self.data.shape) == 3

    @property
    def n_frames(self) -> int:
        """Number of frames (1 for a single image)."""
        return int(self.data.shape[0]) if self.is_stack else 1

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of one frame, in pixels."""
        return tuple(int(s) for s in self.data.shape[-2:])

    @property
    def calibrated(self) -> bool:
        """True when the pixel size is known."""
        return self.px_size_nm is not None

    @property
    def name(self) -> str:
        """A short display name: the file name, plus the channel where there are several."""
        base = self.path.name if self.path is not None else "untitled"
        if self.channel and len(self.channels) > 1:
            return f"{base} [{self.channel}]"
        return base

    def frame(self, index: int = 0) -> np.ndarray:
        """Return frame `index` as a C-contiguous float32 ndarray of shape (H, W).

        For a lazy stack only that frame is read from disk.  Non-finite values in the
        frame are replaced by the mean of the finite ones (see
        :func:`atomlens.io.cleaning.clean_nonfinite`).

        Parameters
        ----------
        index : int
            Frame number, 0-based; negative counts from the end.  A single image has only frame 0.

        Returns
        -------
        (H, W) ndarray, float32
            The frame's values; kept on disk in the file's own dtype, they are converted with
            ``value_transform``.

        Raises
        ------
        IndexError
            When `index` is out of range (anything but 0 for a single image).

        Examples
        --------
        >>> import numpy as np
        >>> mg = Micrograph(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
        >>> mg.n_frames, mg.shape, mg.frame(-1)[0].tolist()
        (2, (3, 4), [12.0, 13.0, 14.0, 15.0])
        """
        if not self.is_stack:
            if index != 0:
                raise IndexError(f"frame {index} requested from a single image")
            arr = self.data
        else:
            if not -self.n_frames <= index < self.n_frames:
                raise IndexError(f"frame {index} out of range 0..{self.n_frames - 1}")
            arr = self.data[index]
        if hasattr(arr, "compute"):  # dask
            arr = arr.compute()
        if np.asarray(arr).dtype != np.float32:  # a stack kept on disk in the file's own type
            from .cleaning import to_float32

            arr = to_float32(arr, self.value_transform)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            from .cleaning import clean_nonfinite

            arr, _ = clean_nonfinite(arr)
        return arr

    # ------------------------------------------------------------------ calibration
    def set_px_size_nm(self, px_size_nm: float | None, px_size_y_nm: float | None = None) -> None:
        """Set (or clear, with None) the pixel size by hand, e.g. for an uncalibrated file.

        Removes ``assumed["px_size"]`` (a size read from the file name) and adds a note.

        Parameters
        ----------
        px_size_nm : float or None
            Pixel size along x (columns), nm per pixel; None clears the calibration.
        px_size_y_nm : float, optional
            Pixel size along y (rows), nm per pixel, for non-square pixels; None (default): the
            same as `px_size_nm`.

        Raises
        ------
        ValueError
            When `px_size_nm` is not a finite positive number.
        """
        if px_size_nm is not None:
            px_size_nm = float(px_size_nm)
            if not np.isfinite(px_size_nm) or px_size_nm <= 0:
                raise ValueError(f"pixel size must be a positive number of nm, got {px_size_nm!r}")
        self.px_size_nm = px_size_nm
        self.px_size_y_nm = px_size_nm if px_size_y_nm is None else float(px_size_y_nm)
        self.assumed.pop("px_size", None)
        self.notes.append(
            "pixel size set by the user" if px_size_nm is not None else "calibration cleared"
        )

    def to_nm(self, x: float, y: float) -> tuple[float, float] | None:
        """Convert pixel coordinates (x = column, y = row) to nm, or None if uncalibrated.

        Parameters
        ----------
        x, y : float
            Position in px (pixel centres at integers), x along columns, y along rows.

        Returns
        -------
        (float, float) or None
            ``offset_nm + (x, y) * pixel size``, in nm; None when ``px_size_nm`` is None.

        Examples
        --------
        >>> import numpy as np
        >>> Micrograph(np.zeros((8, 8), np.float32), px_size_nm=0.25).to_nm(4, 2)
        (1.0, 0.5)
        """
        if self.px_size_nm is None:
            return None
        return (
            self.offset_nm[0] + x * self.px_size_nm,
            self.offset_nm[1] + y * (self.px_size_y_nm or self.px_size_nm),
        )

    @property
    def field_of_view_nm(self) -> tuple[float, float] | None:
        """(width, height) of one frame in nm, or None if uncalibrated."""
        if self.px_size_nm is None:
            return None
        h, w = self.shape
        return (w * self.px_size_nm, h * (self.px_size_y_nm or self.px_size_nm))

    def summary(self) -> dict[str, str]:
        """Key facts for an info panel, as display strings."""
        h, w = self.shape
        out = {
            "File": str(self.path) if self.path else "(none)",
            "Size": f"{w} x {h} px" + (f", {self.n_frames} frames" if self.is_stack else ""),
        }
        if self.px_size_nm is not None:
            fov = self.field_of_view_nm
            out["Pixel size"] = f"{self.px_size_nm * 1000:.4g} pm"
            if self.px_size_y_nm and abs(self.px_size_y_nm - self.px_size_nm) > 1e-6 * self.px_size_nm:
                out["Pixel size"] += f" x {self.px_size_y_nm * 1000:.4g} pm"
            out["Field of view"] = f"{fov[0]:.4g} x {fov[1]:.4g} nm"
        else:
            out["Pixel size"] = "uncalibrated"
        out["Mode"] = self.mode or "unknown"
        if self.channel:
            out["Channel"] = self.channel
        if self.value_units:
            out["Value units"] = self.value_units
        if self.units_original:
            out["Units in file"] = self.units_original
        return out
