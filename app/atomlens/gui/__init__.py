"""The Qt front end of AtomLens (PyQt5 + pyqtgraph).

Modules: :mod:`.app` (``run_gui``, the entry point), :mod:`.main_window`, :mod:`.image_view`
(image, contrast, scale bar, cursor readout), :mod:`.scalebar`, :mod:`.info_dock`,
:mod:`.loader` (background loading), :mod:`.dialogs` and :mod:`.settings`.

Importing this package is cheap: Qt is imported only by the submodules.
"""

__all__ = ["run_gui"]


def run_gui(*args, **kwargs):
    """See :func:`atomlens.gui.app.run_gui`."""
    from .app import run_gui as _run_gui

    return _run_gui(*args, **kwargs)
