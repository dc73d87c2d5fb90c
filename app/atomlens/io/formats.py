"""File formats AtomLens opens, for file dialogs and for routing in :func:`atomlens.io.load`."""

from __future__ import annotations

__all__ = ["FORMATS", "ALL_EXTENSIONS", "file_dialog_filter", "HYPERSPY_EXTENSIONS"]

#: (description, extensions) pairs, in the order a file dialog lists them.
FORMATS: list[tuple[str, tuple[str, ...]]] = [
    ("Gatan DigitalMicrograph", ("dm3", "dm4")),
    ("EMD: Velox and Berkeley", ("emd",)),
    ("FEI/Thermo TIA", ("ser", "emi")),
    ("HyperSpy", ("hspy", "zspy")),
    ("HDF5 (HyperSpy or a single 2D dataset)", ("hdf5", "h5")),
    ("Nanonis STM", ("sxm",)),
    ("TIFF", ("tif", "tiff")),
    ("MRC", ("mrc", "mrcs")),
    ("Images: PNG, JPEG, BMP, GIF", ("png", "jpg", "jpeg", "bmp", "gif")),
    ("NumPy array", ("npy",)),
    ("Blockfile, SEMPER, Digital Surf", ("blo", "unf", "sur", "pro")),
]

ALL_EXTENSIONS: tuple[str, ...] = tuple(e for _, exts in FORMATS for e in exts)

#: Extensions that are read by HyperSpy/RosettaSciIO (the rest have their own readers).
HYPERSPY_EXTENSIONS: frozenset[str] = frozenset(ALL_EXTENSIONS) - {"sxm", "npy"}


def file_dialog_filter() -> str:
    """A Qt file-dialog filter string: all supported files first, then one entry per format.

    Returns
    -------
    str
        Entries ``"Description (*.ext1 *.ext2)"`` joined by ``";;"``: every extension of
        :data:`ALL_EXTENSIONS`, then each of :data:`FORMATS` in order, then ``All files (*)``.

    Examples
    --------
    >>> parts = file_dialog_filter().split(";;")
    >>> parts[1], parts[-1]
    ('Gatan DigitalMicrograph (*.dm3 *.dm4)', 'All files (*)')
    """
    everything = " ".join(f"*.{e}" for e in ALL_EXTENSIONS)
    parts = [f"All supported files ({everything})"]
    parts += [f"{desc} ({' '.join('*.' + e for e in exts)})" for desc, exts in FORMATS]
    parts.append("All files (*)")
    return ";;".join(parts)
