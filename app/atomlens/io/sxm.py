"""Reader for Nanonis ``.sxm`` STM/AFM scans.

HyperSpy cannot read ``.sxm``, and the PyPI readers we looked at are either unmaintained
(nanonispy, last release 2018) or pull in large unrelated stacks, so this is a small reader
of our own, written from the published layout of the format:

* an ASCII header of ``:KEY:`` lines, each followed by its value lines, that ends with
  ``:SCANIT_END:``;
* then the bytes ``0x1A 0x04``;
* then, for every channel listed in ``:DATA_INFO:``, one (rows, cols) block of big-endian
  float32 values for the forward scan and, when its direction is ``both``, a second block
  for the backward scan.

Backward scans are stored in acquisition order (right to left) and are mirrored here so
that all channels share one orientation.  A scan recorded with ``SCAN_DIR`` ``up`` starts
at the bottom of the frame, so it is flipped vertically to put row 0 at the top.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .micrograph import LoadError, Micrograph

__all__ = ["read_sxm", "sxm_channels", "parse_sxm_header"]

_DATA_MARK = b"\x1a\x04"
_END_TAG = b":SCANIT_END:"


def parse_sxm_header(raw: bytes) -> dict[str, str]:
    """Parse the text header of an .sxm file into ``{KEY: value text}`` (values stripped).

    Parameters
    ----------
    raw : bytes
        The header, from ``:NANONIS_VERSION:`` up to and including ``:SCANIT_END:``, decoded as
        Latin-1.

    Returns
    -------
    dict of str to str
        Each ``:KEY:`` line's key (without the colons) mapped to its value lines, joined by
        newlines and stripped (multi-line tables such as ``DATA_INFO`` stay tab-separated).

    Examples
    --------
    >>> parse_sxm_header(b":NANONIS_VERSION:\\n2\\n:SCAN_PIXELS:\\n   256   128\\n:SCANIT_END:\\n")
    {'NANONIS_VERSION': '2', 'SCAN_PIXELS': '256   128', 'SCANIT_END': ''}
    """
    header: dict[str, str] = {}
    key = None
    lines: list[str] = []
    for line in raw.decode("latin-1").splitlines():
        if line.startswith(":") and line.endswith(":") and len(line) > 2:
            if key is not None:
                header[key] = "\n".join(lines).strip()
            key, lines = line[1:-1], []
        elif key is not None:
            lines.append(line)
    if key is not None:
        header[key] = "\n".join(lines).strip()
    return header


#: A scan may hold at most this many pixels (as atomlens.io.MAX_IMAGE_PIXELS).
_MAX_PIXELS = 2**30


def _floats(text: str, n: int, what: str, path) -> list[float]:
    """The first `n` numbers of a header value; LoadError unless they are all finite numbers."""
    try:
        vals = [float(v) for v in text.split()[:n]]
    except ValueError:
        vals = []
    if len(vals) < n or not all(math.isfinite(v) for v in vals):
        raise LoadError(f"{path.name}: the Nanonis header has an unreadable {what} ({text[:80]!r}).")
    return vals


def _optional_floats(header, key: str, n: int, default: list[float], path, notes: list[str]) -> list[float]:
    """Like :func:`_floats` for entries the image can do without: unreadable -> `default` and a note."""
    if key not in header:
        return default
    try:
        return _floats(header[key], n, key, path)
    except LoadError:
        notes.append(f"unreadable {key} {header[key][:40]!r} in the Nanonis header; ignored")
        return default


def _scan_pixels(text: str, path) -> tuple[int, int]:
    """(cols, rows) of ``SCAN_PIXELS``: whole, positive and of a plausible size."""
    cols, rows = _floats(text, 2, "SCAN_PIXELS", path)
    if cols != int(cols) or rows != int(rows):
        raise LoadError(f"{path.name}: the Nanonis header gives a scan of {cols:g} x {rows:g} pixels, "
                        "which is not a whole number.")
    cols, rows = int(cols), int(rows)
    if rows < 1 or cols < 1:
        raise LoadError(f"{path.name}: the Nanonis header gives an empty scan ({cols} x {rows} px).")
    if rows * cols > _MAX_PIXELS:
        raise LoadError(f"{path.name}: the Nanonis header gives an implausible scan of {cols} x {rows} px "
                        "(damaged header?).")
    return cols, rows


def _data_info(text: str) -> list[dict[str, str]]:
    rows = [r.split("\t") for r in text.splitlines() if r.strip()]
    if not rows:
        return []
    head = [h.strip() for h in rows[0] if h.strip()]
    out = []
    for r in rows[1:]:
        cells = [c.strip() for c in r if c.strip()]
        if len(cells) >= len(head):
            out.append(dict(zip(head, cells)))
    return out


def _read_header(path: Path) -> tuple[dict[str, str], int, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    end = raw.find(_END_TAG)
    if not raw.startswith(b":NANONIS_VERSION:") or end < 0:
        raise LoadError(f"{path}: not a Nanonis .sxm file (its header is missing or damaged).")
    start = raw.find(_DATA_MARK, end)
    if start < 0:
        raise LoadError(f"{path}: the Nanonis file has no data block (truncated?).")
    return parse_sxm_header(raw[: end + len(_END_TAG)]), start + len(_DATA_MARK), raw


def _channel_list(info: list[dict[str, str]]) -> list[tuple[str, str, bool]]:
    """[(display name, unit, backward?)] in file order."""
    out = []
    for ch in info:
        name = ch.get("Name", "?")
        unit = ch.get("Unit", "")
        out.append((f"{name} forward", unit, False))
        if ch.get("Direction", "both").lower() == "both":
            out.append((f"{name} backward", unit, True))
    return out


def sxm_channels(path) -> list[str]:
    """Names of the images in an .sxm file, e.g. ``['Z forward', 'Z backward', ...]``.

    Parameters
    ----------
    path : str or Path
        The ``.sxm`` file (only its header is parsed, though the file is read whole).

    Returns
    -------
    list of str
        ``"<channel> forward"`` and, for channels scanned in both directions,
        ``"<channel> backward"``, in the file's order.

    Raises
    ------
    LoadError
        When the file cannot be read or is not a Nanonis ``.sxm`` file.
    """
    header, _, _ = _read_header(Path(path))
    return [c[0] for c in _channel_list(_data_info(header.get("DATA_INFO", "")))]


def _pick(channels: list[str], channel: str | None, path) -> int:
    if channel is None:
        for want in ("Z forward", "Z backward"):
            if want in channels:
                return channels.index(want)
        return 0
    lowered = [c.lower() for c in channels]
    c = channel.strip().lower()
    for cand in (c, f"{c} forward"):
        if cand in lowered:
            return lowered.index(cand)
    raise LoadError(f"{path}: no channel {channel!r}; the file holds {', '.join(channels)}.")


def read_sxm(path, channel: str | None = None) -> Micrograph:
    """Read one channel of a Nanonis .sxm file (``Z forward`` by default).

    Heights are returned in the file's units (``m`` for Z); lengths are converted to nm.

    Parameters
    ----------
    path : str or Path
        The ``.sxm`` file.
    channel : str, optional
        A name from :func:`sxm_channels` (case-insensitive; ``"Current"`` means
        ``"Current forward"``).  None (default): ``Z forward``, else ``Z backward``, else the
        first channel.

    Returns
    -------
    Micrograph
        ``data``: (rows, cols) float32, row 0 at the top, backward scans mirrored to the forward
        orientation; NaN where the scan was stopped early (:func:`atomlens.io.load` replaces
        them).  ``px_size_nm`` / ``px_size_y_nm``: ``SCAN_RANGE`` (m) over the pixel counts, in
        nm per pixel (NaN without a ``SCAN_RANGE``); ``offset_nm``: the centre of pixel (0, 0)
        in nm; ``mode``: ``"STM"`` for Z and current channels, else ``"SPM"``.

    Raises
    ------
    LoadError
        When the file is not a readable ``.sxm``, its header is damaged, its data type is not
        FLOAT, it has no channel `channel`, or it is truncated before that channel's data.
    """
    path = Path(path)
    header, start, raw = _read_header(path)
    notes: list[str] = []
    cols, rows = _scan_pixels(header.get("SCAN_PIXELS", ""), path)
    if "SCAN_RANGE" not in header:
        notes.append("no SCAN_RANGE in the Nanonis header")
    range_m = _optional_floats(header, "SCAN_RANGE", 2, [math.nan, math.nan], path, notes)
    offset_m = _optional_floats(header, "SCAN_OFFSET", 2, [0.0, 0.0], path, notes)
    fmt = header.get("SCANIT_TYPE", "FLOAT MSBFIRST").split()
    if fmt and fmt[0].upper() != "FLOAT":
        raise LoadError(f"{path}: Nanonis data type {fmt[0]!r} is not supported (only FLOAT).")
    dtype = ">f4" if "LSBFIRST" not in (f.upper() for f in fmt) else "<f4"
    chans = _channel_list(_data_info(header.get("DATA_INFO", "")))
    if not chans:
        raise LoadError(f"{path}: the Nanonis header lists no data channels.")
    names = [c[0] for c in chans]
    idx = _pick(names, channel, path)
    block = rows * cols * 4
    first = start + idx * block
    if first + block > len(raw):
        have = (len(raw) - start) // block
        raise LoadError(
            f"{path}: the file is truncated: it holds {have} of {len(chans)} images "
            f"({names[idx]!r} is missing)."
        )
    img = np.frombuffer(raw, dtype=dtype, count=rows * cols, offset=first).reshape(rows, cols)
    img = img.astype(np.float32)
    if chans[idx][2]:
        img = img[:, ::-1]
    scan_dir = header.get("SCAN_DIR", "down").strip().lower()
    if scan_dir == "up":
        img = img[::-1, :]
    img = np.ascontiguousarray(img)
    n_nan = int((~np.isfinite(img)).sum())
    if n_nan:
        notes.append(f"{n_nan} unscanned (NaN) pixels: the scan was stopped before the end")
    px_x = range_m[0] * 1e9 / cols
    px_y = range_m[1] * 1e9 / rows
    (angle,) = _optional_floats(header, "SCAN_ANGLE", 1, [0.0], path, notes) if header.get("SCAN_ANGLE") else (0.0,)
    if angle != 0:
        notes.append(f"scan frame rotated by {angle:g} degrees (not undone)")
    # frame centre is SCAN_OFFSET; pixel (0,0) centre is half a pixel in from the top-left corner
    offset_nm = (
        offset_m[0] * 1e9 - range_m[0] * 1e9 / 2 + px_x / 2,
        offset_m[1] * 1e9 - range_m[1] * 1e9 / 2 + px_y / 2,
    )
    if not all(math.isfinite(v) for v in offset_nm):
        offset_nm = (0.0, 0.0)
    meta = {"Nanonis": dict(header)}
    return Micrograph(
        data=img,
        px_size_nm=px_x,
        px_size_y_nm=px_y,
        offset_nm=offset_nm,
        mode="STM" if chans[idx][0].lower().startswith(("z ", "current")) else "SPM",
        metadata=meta,
        path=path,
        channel=names[idx],
        channels=names,
        units_original="m",
        value_units=chans[idx][1] or None,
        notes=notes,
    )
