"""How images are scaled before a network sees them: the names a model card may give.

Kept apart from :mod:`atomlens.nn.data` (torch, the simulator) so that reading a model's card
(the GUI's model list at start-up, ``atomlens models``) imports neither.
"""

from __future__ import annotations

__all__ = ["NORMALISATION", "NORMALISATION_METHODS", "normalisation_spec"]

#: Recorded in model cards: how images are scaled before the network sees them.
NORMALISATION = {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}
#: "clip-zscore": clip to the 0.1-99.9 percentiles, then zero mean and unit variance.
#: "clip-robust": the same clip, then zero median and unit spread measured by the
#: interquartile range (IQR / 1.349, the standard deviation of a Gaussian), so that a few
#: very bright pixels (a heavy adatom on graphene) no longer shrink the lattice's contrast.
NORMALISATION_METHODS = ("clip-zscore", "clip-robust")


def normalisation_spec(spec=None) -> dict:
    """The card entry for a normalisation given by name, by a card entry, or None (default)."""
    if spec is None:
        return dict(NORMALISATION)
    method = spec if isinstance(spec, str) else (spec or {}).get("method", NORMALISATION["method"])
    if method not in NORMALISATION_METHODS:
        raise ValueError(f"unknown normalisation {method!r}; known: {', '.join(NORMALISATION_METHODS)}")
    return {"method": method, "clip_percentiles": list(NORMALISATION["clip_percentiles"])}
