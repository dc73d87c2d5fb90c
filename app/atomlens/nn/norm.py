"""How images are scaled before a network sees them: the names a model card may give.

Kept apart from :mod:`atomlens.nn.data` (torch, the simulator) so that reading a model's card
(the GUI's model list at start-up, ``atomlens models``) imports neither.
"""

from __future__ import annotations

__all__ = ["LOCAL_METHODS", "NORMALISATION", "NORMALISATION_METHODS", "normalisation_spec"]

#: Recorded in model cards: how images are scaled before the network sees them.
NORMALISATION = {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}
#: "clip-zscore": clip to the 0.1-99.9 percentiles, then zero mean and unit variance.
#: "clip-robust": the same clip, then zero median and unit spread measured by the
#: interquartile range (IQR / 1.349, the standard deviation of a Gaussian), so that a few
#: very bright pixels (a heavy adatom on graphene) no longer shrink the lattice's contrast.
#: "local-contrast": the smooth background removed by a local linear fit at
#: ``background_sigma_A``, then divided by the local RMS contrast at ``contrast_sigma_A`` (never
#: by less than the image's median local contrast), then clipped to ``clip``: a ramp, a bowl
#: or a bright patch leaves the rest of the image as it was (:mod:`atomlens.analysis.background`).
NORMALISATION_METHODS = ("clip-zscore", "clip-robust", "local-contrast")
#: The methods whose parameters are lengths in Å (the pixel size must be known to apply them).
LOCAL_METHODS = ("local-contrast",)


def normalisation_spec(spec=None) -> dict:
    """The card entry for a normalisation given by name, by a card entry, or None (default).

    Parameters
    ----------
    spec : str, dict or None
        A name of :data:`NORMALISATION_METHODS`, a card's ``normalisation`` entry (a dict with
        ``method``; a dict without one means ``clip-zscore``), or None for :data:`NORMALISATION`.

    Returns
    -------
    dict
        A new dict: ``{"method", "clip_percentiles"}`` for the ``clip-*`` methods (always the
        standard 0.1-99.9 percentiles); for ``local-contrast``, ``background_sigma_A`` and
        ``contrast_sigma_A`` (Å) and ``clip`` (``[lo, hi]``, in units of the local contrast),
        each from `spec` where given, else from
        :data:`atomlens.analysis.background.LOCAL_DEFAULTS`, as floats.

    Raises
    ------
    ValueError
        For an unknown method, or local-contrast parameters that are not positive lengths and
        an increasing clip range.

    Examples
    --------
    >>> normalisation_spec()
    {'method': 'clip-zscore', 'clip_percentiles': [0.1, 99.9]}
    >>> normalisation_spec({"method": "local-contrast", "clip": [-3, 6]})
    {'method': 'local-contrast', 'background_sigma_A': 3.0, 'contrast_sigma_A': 3.0, 'clip': [-3.0, 6.0]}
    """
    if spec is None:
        return dict(NORMALISATION)
    method = spec if isinstance(spec, str) else (spec or {}).get("method", NORMALISATION["method"])
    if method not in NORMALISATION_METHODS:
        raise ValueError(f"unknown normalisation {method!r}; known: {', '.join(NORMALISATION_METHODS)}")
    if method in LOCAL_METHODS:
        from ..analysis.background import LOCAL_DEFAULTS

        given = {} if isinstance(spec, str) else dict(spec)
        out = {"method": method}
        for k, v in LOCAL_DEFAULTS.items():
            out[k] = [float(a) for a in given.get(k, v)] if isinstance(v, list) else float(given.get(k, v))
        if not (out["background_sigma_A"] > 0 and out["contrast_sigma_A"] > 0 and out["clip"][0] < out["clip"][1]):
            raise ValueError(f"bad local-contrast normalisation parameters: {out}")
        return out
    return {"method": method, "clip_percentiles": list(NORMALISATION["clip_percentiles"])}
