"""Progress reporting shared by every long job: a part of a job reports into its share of the
whole (``progress(fraction, message)`` callbacks, fractions 0..1)."""

from __future__ import annotations

__all__ = ["sub_progress"]


def sub_progress(progress, start: float, span: float, label: str | None = None):
    """A progress callback for one part of a job.

    Parameters
    ----------
    progress : callable(float, str) or None
        The whole job's callback (None: the part reports nowhere).
    start, span : float
        The part's share of the whole: its 0..1 maps onto ``start .. start + span``.
    label : str, optional
        Replaces the part's messages (e.g. the file's name and index); None passes them on.

    Returns
    -------
    callable(float, str)

    Examples
    --------
    >>> seen = []
    >>> part = sub_progress(lambda f, m: seen.append((f, m)), 0.5, 0.25, "file 2/2")
    >>> part(0.5, "tile 1/4"); seen
    [(0.625, 'file 2/2')]
    """
    def cb(frac, msg):
        if progress:
            progress(start + span * float(frac), msg if label is None else label)
    return cb
