"""Point lists imported as atoms: CSVs of positions (``x,y`` with or without a header or a row
number column, ImageJ's ``Results.csv``, AtomLens's own ``atoms.csv``), read strictly, with a
clear message naming the line that cannot be read."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

__all__ = ["POINT_LIST_MAX_BYTES", "PointList", "PointListError", "parse_point_list", "read_point_list"]


class PointListError(ValueError):
    """A point list (CSV of atom positions) that cannot be imported; the message names the
    file, the line and what is wrong."""


@dataclasses.dataclass
class PointList:
    """Atom positions read from a text table (:func:`read_point_list`).

    Attributes
    ----------
    x, y : (n,) float64, px
        Column and row in the image's pixels (centre of the top-left pixel at 0, 0).
    classes : list of str or None
        Class name of each point (a ``class`` column), or None.
    score : (n,) float64 or None
        A ``score`` column, or None.
    name : str
        The file (for messages).
    layout : str
        What was recognised, e.g. ``"header x,y"``, ``"row number, x, y"``.
    """

    x: np.ndarray
    y: np.ndarray
    classes: list | None = None
    score: np.ndarray | None = None
    name: str = "the point list"
    layout: str = ""

    def __len__(self) -> int:
        return len(self.x)


#: Largest point list read (bytes).
POINT_LIST_MAX_BYTES = 64 << 20
_X_NAMES, _Y_NAMES = ("x", "x_px", "x (px)", "x [px]", "x/px"), ("y", "y_px", "y (px)", "y [px]", "y/px")


def _float_or_none(v: str):
    try:
        f = float(v)
    except ValueError:
        return None
    return f


def parse_point_list(text: str, name: str = "the point list") -> PointList:
    """Atom positions in pixels from a text table.

    Understood: comma-, tab-, semicolon- or space-separated columns; a header line naming
    columns ``x`` and ``y`` (any case; also ``x_px``, ``X (px)``), with optional ``class`` and
    ``score`` columns and any others ignored (AtomLens's own ``x,y,class,score,x_nm,y_nm``;
    ImageJ's ``Results.csv`` `` ,X,Y`` with a row-number column); without a header, two
    columns ``x, y`` or three ``row number, x, y`` (the first a running count from 0 or 1).
    Blank lines and lines starting with ``#`` are skipped.

    The delimiter is taken from the first line (the first of comma, tab, semicolon found in
    it, else blanks); the first line is a header when any of its fields is not a number.

    Parameters
    ----------
    text : str
        The table (a leading byte-order mark is dropped).
    name : str, optional
        Names the source in messages (and in :attr:`PointList.name`).

    Returns
    -------
    PointList
        Positions in px; ``classes`` and ``score`` only when the header names those columns;
        ``layout`` says what was recognised.

    Raises
    ------
    PointListError
        (a ValueError) Empty, no x/y columns (or only nm ones), a row with too few fields, a
        value that is not a finite number: the message names `name` and the line.

    Examples
    --------
    >>> p = parse_point_list("x,y,class\\n1,2,atom\\n3.5,4,dopant\\n")
    >>> p.x.tolist(), p.y.tolist(), p.classes, p.layout
    ([1.0, 3.5], [2.0, 4.0], ['atom', 'dopant'], 'header x,y,class')
    >>> parse_point_list("0 1.5 2.5\\n1 3 4\\n").layout
    'row number, x, y'
    """
    import csv
    import io as _io

    rows = []
    for k, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((k, line))
    if not rows:
        raise PointListError(f"{name}: no points (the file is empty)")
    first = rows[0][1]
    delim = next((d for d in (",", "\t", ";") if d in first), None)
    if delim is None:
        table = [(k, line.split()) for k, line in rows]
    else:
        table = [(k, f) for (k, _), f in zip(rows, csv.reader(_io.StringIO("\n".join(r for _, r in rows)),
                                                               delimiter=delim))]
    table = [(k, [c.strip() for c in f]) for k, f in table]
    head = table[0][1]
    classes = score_col = None
    if any(_float_or_none(c) is None for c in head):  # a header
        low = [c.lower().strip('"\'') for c in head]
        ix = next((low.index(n) for n in _X_NAMES if n in low), None)
        iy = next((low.index(n) for n in _Y_NAMES if n in low), None)
        if ix is None or iy is None:
            if "x_nm" in low:
                raise PointListError(f"{name}: the header {','.join(head)!r} has positions in nm only; the import "
                                     "needs pixel columns 'x' and 'y'")
            raise PointListError(f"{name}: line {table[0][0]}: the header {','.join(head)!r} names no 'x' and 'y' "
                                 "columns (pixels)")
        cc = low.index("class") if "class" in low else None
        sc = low.index("score") if "score" in low else None
        body = table[1:]
        layout = "header " + ",".join(h for h in head)
    else:
        body = table
        n = len(head)
        if n == 2:
            ix, iy, layout = 0, 1, "x, y"
        elif n == 3:
            first_col = [_float_or_none(f[0]) if f else None for _, f in body]
            start = first_col[0]
            if start in (0.0, 1.0) and all(v == start + i for i, v in enumerate(first_col)):
                ix, iy, layout = 1, 2, "row number, x, y"
            else:
                raise PointListError(f"{name}: three columns without a header, and the first is not a row number: "
                                     "add a header line naming the 'x' and 'y' columns")
        else:
            raise PointListError(f"{name}: {n} column(s) without a header; expected x, y (or row number, x, y), or "
                                 "a header line naming the 'x' and 'y' columns")
        cc = sc = None
    need = max(i for i in (ix, iy, cc, sc) if i is not None) + 1
    xs, ys, cl, sv = [], [], [], []
    for k, f in body:
        if len(f) < need:
            raise PointListError(f"{name}: line {k} has {len(f)} field(s), {need} expected")
        vals = []
        for i, what in ((ix, "x"), (iy, "y")) + (((sc, "score"),) if sc is not None else ()):
            v = _float_or_none(f[i])
            if v is None or not math.isfinite(v):
                raise PointListError(f"{name}: line {k}: {what} is {f[i]!r}, not a finite number")
            vals.append(v)
        xs.append(vals[0])
        ys.append(vals[1])
        if sc is not None:
            sv.append(vals[2])
        if cc is not None:
            if not f[cc]:
                raise PointListError(f"{name}: line {k}: the class is empty")
            cl.append(f[cc])
    if not xs:
        raise PointListError(f"{name}: no points (only a header)")
    if cc is not None:
        classes = cl
    if sc is not None:
        score_col = np.array(sv, np.float64)
    return PointList(np.array(xs, np.float64), np.array(ys, np.float64), classes, score_col, name, layout)


def read_point_list(path) -> PointList:
    """:func:`parse_point_list` of a file (UTF-8, with or without a byte-order mark; Latin-1
    as a fallback).  Raises :class:`PointListError` also for a file that cannot be read, is
    binary or larger than :data:`POINT_LIST_MAX_BYTES`.

    Parameters
    ----------
    path : str or os.PathLike
        The text table.

    Returns
    -------
    PointList
        As :func:`parse_point_list`, named by the path.

    Raises
    ------
    PointListError
        (a ValueError) For an unreadable, binary (a NUL byte) or too large file, or any
        error of :func:`parse_point_list`.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > POINT_LIST_MAX_BYTES:
            raise PointListError(f"{path}: {size / 2 ** 20:.0f} MB is too large for a point list")
        data = path.read_bytes()
    except OSError as exc:
        raise PointListError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if b"\0" in data:
        raise PointListError(f"{path}: not a text file (a point list is a CSV of x, y positions in pixels)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_point_list(text, str(path))
