"""The colours of the atom classes and defect types: one table for the model cards, the
overlays, the exports and the snapshots (a model card's own ``colours`` take precedence)."""

from __future__ import annotations

__all__ = ["CLASS_COLOURS", "COLOUR_CYCLE", "DEFECT_MARKER_COLOUR", "class_colours", "default_class_colours"]

#: Colour (``#rrggbb``) of each standard class, as the bundled model cards record them.
CLASS_COLOURS = {"background": "#000000", "atom": "#50c8ff", "dopant": "#ff5050", "vacancy": "#ffdc00"}
#: Colour of the defect markers (a defect type without one of its own).
DEFECT_MARKER_COLOUR = "#ff00ff"
#: Colours given in turn to the classes and defect types that have none.
COLOUR_CYCLE = ("#7cff6b", "#ff8cf0", "#ffa040", "#b39dff", "#40ffd9", "#ff6f91", "#c0ff40", "#6fa8ff", "#ffd0a0")


def default_class_colours() -> dict:
    """``{class name: colour}`` of the standard atom classes (background left out), a new dict."""
    return {k: v for k, v in CLASS_COLOURS.items() if k != "background"}


def class_colours(names, card_colours: dict | None = None) -> dict:
    """Colour (``#rrggbb``) for each name: the card's, else the standard one, else the next of
    :data:`COLOUR_CYCLE`.

    Parameters
    ----------
    names : iterable of str
        Class names or defect types.
    card_colours : dict, optional
        A model card's ``colours`` (name -> colour).

    Returns
    -------
    dict
        ``{name: '#rrggbb'}`` in the order of `names`.

    Examples
    --------
    >>> class_colours(["atom", "dopant", "x"], {"atom": "#010203"})
    {'atom': '#010203', 'dopant': '#ff5050', 'x': '#7cff6b'}
    """
    standard = default_class_colours()
    out, k = {}, 0
    for n in names:
        c = (card_colours or {}).get(n) or standard.get(n)
        if c is None:
            c = COLOUR_CYCLE[k % len(COLOUR_CYCLE)]
            k += 1
        out[n] = c
    return out
