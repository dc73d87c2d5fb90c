"""The calibration of an image: pixel sizes in x and y, and where pixel (0, 0) sits.

A :class:`Calibration` is built once from the Micrograph (or the user's pixel size), carried on
the analysis result (:attr:`atomlens.analysis.pipeline.AnalysisResult.calibration`), and every
conversion between pixels and nm goes through it: the CSV and JSON columns, the HyperSpy
export, the atom table, the cursor readout and the statistics of the Results dock.  Positions
in px are those of the image as recorded; the centre of the top-left pixel is (0, 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Calibration"]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Pixel sizes (nm/px) in x and y and the physical position of pixel (0, 0).

    Attributes
    ----------
    px_x_nm : float or None
        Width of a pixel in nm; None for an uncalibrated image (the nm columns stay empty).
    px_y_nm : float or None
        Height of a pixel in nm; None means square pixels (``px_x_nm``).
    offset_nm : (float, float)
        Physical (x, y) of the centre of pixel (0, 0), in nm.

    Examples
    --------
    >>> cal = Calibration(0.02, 0.025, (1.0, 2.0))
    >>> cal.to_nm([0.0, 10.0], [0.0, 4.0])
    (array([1. , 1.2]), array([2. , 2.1]))
    >>> cal.px_A, cal.square
    (0.2, False)
    >>> Calibration(None).calibrated
    False
    """

    px_x_nm: float | None
    px_y_nm: float | None = None
    offset_nm: tuple = (0.0, 0.0)

    def __post_init__(self):
        for name in ("px_x_nm", "px_y_nm"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(float(v)) and float(v) > 0):
                raise ValueError(f"{name} must be a positive number of nm or None, got {v!r}")
        object.__setattr__(self, "offset_nm", (float(self.offset_nm[0]), float(self.offset_nm[1])))

    @classmethod
    def from_micrograph(cls, mg, px_size_nm: float | None = None) -> "Calibration":
        """The calibration of `mg` (its ``px_size_nm``, ``px_size_y_nm`` and ``offset_nm``);
        a `px_size_nm` given by the user replaces the file's, as square pixels.

        Parameters
        ----------
        mg : Micrograph
            Or any object with ``px_size_nm`` (nm/px or None), ``offset_nm`` ((x, y) nm) and
            optionally ``px_size_y_nm`` (nm/px or None).
        px_size_nm : float, nm/px, optional
            The user's pixel size; the file's offset is kept.

        Returns
        -------
        Calibration
            ``px_y_nm`` is None unless the file's pixel height differs from its width.

        Raises
        ------
        ValueError
            For a pixel size that is not a positive finite number.

        Examples
        --------
        >>> from types import SimpleNamespace
        >>> mg = SimpleNamespace(px_size_nm=0.02, px_size_y_nm=0.02, offset_nm=(0.0, 0.0))
        >>> Calibration.from_micrograph(mg).square, Calibration.from_micrograph(mg, 0.05).px_A
        (True, 0.5)
        """
        if px_size_nm is not None:
            return cls(float(px_size_nm), None, tuple(mg.offset_nm))
        py = getattr(mg, "px_size_y_nm", None)
        px = mg.px_size_nm
        return cls(px, py if (px is not None and py is not None and py != px) else None, tuple(mg.offset_nm))

    @property
    def calibrated(self) -> bool:
        """Whether the pixel size is known."""
        return self.px_x_nm is not None

    @property
    def y_nm(self) -> float | None:
        """Height of a pixel in nm (``px_x_nm`` for square pixels; None when uncalibrated)."""
        return None if self.px_x_nm is None else float(self.px_y_nm or self.px_x_nm)

    @property
    def square(self) -> bool:
        """Whether the pixels are square (or the image is uncalibrated)."""
        return self.px_y_nm is None or self.px_y_nm == self.px_x_nm

    @property
    def px_A(self) -> float | None:
        """Width of a pixel in Å (what the networks and the lattice code use), or None."""
        return None if self.px_x_nm is None else float(self.px_x_nm) * 10.0

    def to_nm(self, x, y):
        """Physical positions of pixel positions.

        Parameters
        ----------
        x, y : array_like, px
            Positions in the image's pixels (centre of the top-left pixel at 0, 0).

        Returns
        -------
        (x_nm, y_nm) : float64 arrays of the shape of `x` and `y`, nm
            ``offset + position * pixel size``, each axis with its own pixel size; None, None
            for an uncalibrated image.
        """
        if self.px_x_nm is None:
            return None, None
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        return self.offset_nm[0] + x * float(self.px_x_nm), self.offset_nm[1] + y * self.y_nm

    def to_px(self, x_nm, y_nm):
        """Pixel positions of physical positions (the inverse of :meth:`to_nm`).

        Parameters
        ----------
        x_nm, y_nm : array_like, nm
            Physical positions.

        Returns
        -------
        (x, y) : float64 arrays of the shape of `x_nm` and `y_nm`, px
            ``(position - offset) / pixel size``, each axis with its own pixel size.

        Raises
        ------
        ValueError
            For an uncalibrated image.

        Examples
        --------
        >>> x, y = Calibration(0.02, 0.025, (1.0, 2.0)).to_px([1.0, 1.2], [2.0, 2.1])
        >>> x.round(9).tolist(), y.round(9).tolist()
        ([0.0, 10.0], [0.0, 4.0])
        """
        if self.px_x_nm is None:
            raise ValueError("the image is not calibrated: nm positions cannot be turned into pixels")
        return ((np.asarray(x_nm, np.float64) - self.offset_nm[0]) / float(self.px_x_nm),
                (np.asarray(y_nm, np.float64) - self.offset_nm[1]) / self.y_nm)

    def length_nm(self, length_px: float) -> float | None:
        """A length along x (a distance between columns of square pixels) in nm, or None.

        Parameters
        ----------
        length_px : float, px
            A length in pixel widths.

        Returns
        -------
        float or None, nm
            ``length_px * px_x_nm``; None for an uncalibrated image.  With non-square pixels
            it is right only along x.

        Examples
        --------
        >>> Calibration(0.05).length_nm(20), Calibration(None).length_nm(20)
        (1.0, None)
        """
        return None if self.px_x_nm is None else float(length_px) * float(self.px_x_nm)
