"""Small widgets the docks share."""

from __future__ import annotations

import html

from PyQt5 import QtCore, QtWidgets

__all__ = ["NOTE_COLOUR", "notes_html", "notes_label"]

#: Colour of the notes (what was assumed, warnings) under a dock's figures.
NOTE_COLOUR = "#a05a00"


def notes_label() -> QtWidgets.QLabel:
    """A hidden, word-wrapped rich-text label for notes, in :data:`NOTE_COLOUR` (rich text, so
    that one note alone with a '<' in it is still escaped and shown as it is)."""
    label = QtWidgets.QLabel()
    label.setTextFormat(QtCore.Qt.RichText)
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {NOTE_COLOUR};")
    label.hide()
    return label


def notes_html(notes) -> str:
    """The notes as the label shows them: one line each, escaped, after a warning sign."""
    return "<br>".join(f"⚠ {html.escape(n)}" for n in notes)
