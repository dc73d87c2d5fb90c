"""The AtomLens main window: menus, toolbar, image view, docks (Analysis, Layers, Info),
status bar.  The analysis itself is driven by :mod:`.analysis_controller`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets

from . import dialogs
from .analysis_controller import AnalysisController
from .analysis_dock import AnalysisDock
from .annotate import AnnotateController
from .image_view import COLORMAPS, ImageView
from .info_dock import InfoDock
from .layer_views import Overlays
from .layers_dock import LayersDock
from .results_controller import ResultsController
from .loader import BackgroundLoader, LoadFailure, LoadResult
from .settings import RecentFiles, make_settings

__all__ = ["MainWindow"]

APP_NAME = "AtomLens"


class MainWindow(QtWidgets.QMainWindow):
    """Viewer window.

    Parameters
    ----------
    settings : QSettings, optional
        Where recent files and the window state are kept (default: :func:`make_settings`).
    interactive : bool
        False for scripted runs (``--screenshot``, ``--exit-after-show``): errors go to
        stderr instead of modal message boxes.

    Signals: ``imageLoaded(object)`` with the Micrograph, ``loadFailed(str)`` with the message,
    ``resultChanged(object)`` with the :class:`~atomlens.analysis.pipeline.AnalysisResult` shown
    for the displayed frame after each run or re-derivation (None when a new image is opened or
    a frame without a result is shown).

    Attributes: ``analysis`` (:class:`AnalysisController`: ``results`` per frame,
    ``current_result()``, ``run_current()``, ``run_all_frames()``, ``cancel()``), ``overlays``
    (:class:`~atomlens.gui.layer_views.Overlays`), ``analysis_dock``, ``layers_dock``, ``info_dock``.
    """

    imageLoaded = QtCore.pyqtSignal(object)
    loadFailed = QtCore.pyqtSignal(str)
    resultChanged = QtCore.pyqtSignal(object)

    def __init__(self, settings: QtCore.QSettings | None = None, interactive: bool = True):
        super().__init__()
        from .gcguard import collect_in_gui_thread

        collect_in_gui_thread()  # never a collection in a worker thread (it can free Qt objects in use)
        self.settings = settings if settings is not None else make_settings()
        self.recent = RecentFiles(self.settings)
        self.interactive = interactive
        self.micrograph = None
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1300, 850)

        self.image_view = ImageView(self)
        self.setCentralWidget(self.image_view)
        self.info_dock = InfoDock(self)
        self.overlays = Overlays(self.image_view.viewbox, self)
        self.analysis_dock = AnalysisDock(self)
        self.layers_dock = LayersDock(self.overlays, self)
        right = QtCore.Qt.RightDockWidgetArea
        self.addDockWidget(right, self.analysis_dock)
        self.addDockWidget(right, self.layers_dock)  # below the Analysis/Info tabs
        self.addDockWidget(right, self.info_dock)
        self.tabifyDockWidget(self.analysis_dock, self.info_dock)
        self.analysis_dock.raise_()
        self.resizeDocks([self.analysis_dock], [370], QtCore.Qt.Horizontal)
        self.resizeDocks([self.analysis_dock, self.layers_dock], [450, 350], QtCore.Qt.Vertical)
        self.info_dock.channelRequested.connect(self.open_channel)
        self.info_dock.setPixelSizeRequested.connect(self.ask_pixel_size)
        self.analysis = AnalysisController(self, self.analysis_dock, self.overlays)
        self.analysis.resultChanged.connect(self.resultChanged)
        self.results = ResultsController(self)
        self.annotate = AnnotateController(self)
        self.results.follow_annotations(self.annotate)  # the dock and exports show the corrections
        self._training = self._retrain_dialog = self._model_dialog = None

        self.loader = BackgroundLoader(self)
        self.loader.started.connect(self._on_load_started)
        self.loader.finished.connect(self._on_loaded)
        self.loader.failed.connect(self._on_load_failed)

        self._build_status_bar()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self.image_view.cursorMoved.connect(self._on_cursor)
        self._restore_state()

    # ================================================================= construction
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.busy_label = QtWidgets.QLabel()
        self.busy_bar = QtWidgets.QProgressBar()
        self.busy_bar.setRange(0, 0)  # indeterminate
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setMaximumHeight(14)
        self.readout_label = QtWidgets.QLabel()
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.FixedFont)
        self.readout_label.setFont(font)
        self.readout_label.setMinimumWidth(380)
        sb.addPermanentWidget(self.busy_label)
        sb.addPermanentWidget(self.busy_bar)
        sb.addPermanentWidget(self.readout_label)
        self.busy_label.hide()
        self.busy_bar.hide()

    def _action(self, text, slot, shortcut=None, tip=None, checkable=False):
        act = QtWidgets.QAction(text, self)
        if shortcut:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        return act

    def _build_actions(self) -> None:
        self.act_open = self._action("&Open…", self.open_dialog, QtGui.QKeySequence.Open,
                                     "Open a micrograph")
        self.act_quit = self._action("&Quit", self.close, QtGui.QKeySequence.Quit)
        self.act_px = self._action("Set &pixel size…", self.ask_pixel_size, None,
                                   "Set the calibration by hand")
        self.act_auto = self._action("&Auto contrast", self.auto_contrast, "A",
                                     "Reset contrast to the 0.5-99.5 % percentiles")
        self.act_fit = self._action("&Zoom to fit", self.image_view.zoom_to_fit, "Ctrl+0")
        self.act_scalebar = self._action("Scale &bar", self.image_view.scale_bar.set_enabled,
                                         None, checkable=True)
        self.act_scalebar.setChecked(True)
        self.act_hist = self._action("Contrast &histogram", self.image_view.histogram.setVisible,
                                     None, checkable=True)
        self.act_hist.setChecked(True)
        self.act_about = self._action("&About AtomLens", lambda: dialogs.show_about(self))
        self.act_run, self.act_run_all, self.act_cancel = self.analysis.actions  # F5, -, Esc

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m_file = mb.addMenu("&File")
        m_file.addAction(self.act_open)
        self.recent_menu = m_file.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        self.sample_menu = m_file.addMenu("Open &Sample")
        from atomlens.samples import SAMPLES

        for s in SAMPLES:
            act = self.sample_menu.addAction(s.title)
            act.setStatusTip(s.description)
            act.setData(s.key)
            act.triggered.connect(lambda _=False, key=s.key: self.open_sample(key))
        m_file.addSeparator()
        self.results.fill_file_menu(m_file)
        m_file.addSeparator()
        m_file.addAction(self.act_quit)

        m_image = mb.addMenu("&Image")
        m_image.addAction(self.act_px)
        m_image.addAction(self.act_auto)
        m_image.addAction(self.act_fit)

        m_analysis = mb.addMenu("&Analysis")
        m_analysis.addAction(self.act_run)
        m_analysis.addAction(self.act_run_all)
        m_analysis.addAction(self.act_cancel)

        m_annotate = mb.addMenu("A&nnotate")
        self.annotate.fill_menu(m_annotate)

        m_model = mb.addMenu("&Model")
        self.act_retrain = m_model.addAction("&Retrain…", self.open_retrain)
        self.act_retrain.setStatusTip("Fine-tune a model on simulations and your corrected atoms")
        self.act_models = m_model.addAction("&Manage models…", self.open_model_manager)
        m_model.addSeparator()
        self._build_cpu_arithmetic_menu(m_model)

        self.view_menu = mb.addMenu("&View")
        for dock in (self.analysis_dock, self.layers_dock, self.results.dock, self.info_dock):
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addAction(self.act_hist)
        self.view_menu.addAction(self.act_scalebar)

        m_help = mb.addMenu("&Help")
        m_help.addAction(self.act_about)

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Main")
        tb.setObjectName("MainToolBar")
        tb.addAction(self.act_open)
        tb.addAction(self.act_auto)
        tb.addAction(self.act_fit)
        tb.addSeparator()
        tb.addAction(self.act_run)
        tb.addAction(self.annotate.act_toggle)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" Colour map: "))
        self.cmap_combo = QtWidgets.QComboBox()
        self.cmap_combo.addItems(list(COLORMAPS))
        self.cmap_combo.currentTextChanged.connect(self.image_view.set_colormap)
        tb.addWidget(self.cmap_combo)
        self.view_menu.addAction(tb.toggleViewAction())

    # ================================================================= state
    def _restore_state(self) -> None:
        geom = self.settings.value("window/geometry")
        if geom is not None:
            self.restoreGeometry(geom)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        self.annotate.sync_toolbar()  # the saved state may show it: Annotate mode alone does
        try:  # the analysis settings (threshold, refinement, models picked per imaging mode...)
            self.analysis_dock.restore_state(json.loads(str(self.settings.value("analysis/settings", "{}"))))
        except ValueError:
            pass

    def save_state(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("analysis/settings", json.dumps(self.analysis_dock.state()))
        self.settings.sync()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.save_state()
        self.annotate.shutdown()
        if self._training is not None:
            self._training.shutdown()
        self.loader.shutdown()
        self.analysis.shutdown()
        from .model_manager_jobs import wait_for_jobs

        wait_for_jobs()  # a model export or import in progress is finished, never cut off
        super().closeEvent(event)

    # ================================================================= opening
    def open_dialog(self) -> None:
        from atomlens.workflows.analyse import file_dialog_filter

        start = str(Path(self.recent.paths()[0]).parent) if self.recent.paths() else ""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open micrograph", start,
                                                        file_dialog_filter())
        if path:
            self.open_file(path)

    def open_file(self, path, channel: str | None = None) -> bool:
        """Start loading `path` in the background. False if the file does not exist."""
        path = Path(path)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            self._error("Could not open file", f"{path} {what}.")
            return False
        self.loader.submit(path=path, channel=channel)
        return True

    def open_sample(self, key: str) -> None:
        self.loader.submit(sample=key)

    def open_channel(self, channel: str) -> None:
        mg = self.micrograph
        if mg is not None and mg.path is not None and channel != mg.channel:
            self.loader.submit(path=mg.path, channel=channel)

    def open_recent(self, path: str) -> None:
        if not Path(path).is_file():
            self.recent.remove(path)
            self._fill_recent_menu()
            self._error("File not found",
                        f"{path} no longer exists.\nIt has been removed from the recent files.")
            return
        self.open_file(path)

    #: Model > CPU arithmetic: (setting value, menu text, tooltip)
    CPU_ARITHMETIC = (
        ("auto", "&Automatic", "bf16 where the CPU has native bf16 (AVX512-BF16, AMX), else fp32"),
        ("on", "&bf16 (faster)", "bf16 autocast on the CPU: about as accurate on our test images, faster on "
                                "CPUs with native bf16, slower elsewhere"),
        ("off", "&fp32 (exact)", "full float32 arithmetic on the CPU: the same maps on every CPU"),
    )

    def _build_cpu_arithmetic_menu(self, menu) -> None:
        """Model > CPU arithmetic, kept in the settings; unset, the ATOMLENS_CPU_BF16
        environment variable (or Automatic) is shown and used.  CUDA always runs bf16."""
        from atomlens.workflows.models import cpu_bf16_choice

        sub = menu.addMenu("CPU &arithmetic")
        sub.setToolTipsVisible(True)
        self.cpu_arithmetic_group = QtWidgets.QActionGroup(self)
        stored = self.settings.value("analysis/cpu_bf16", None)
        try:
            current = cpu_bf16_choice(stored)
        except ValueError:  # a bad environment variable or a damaged setting
            current = "auto"
        for key, text, tip in self.CPU_ARITHMETIC:
            act = sub.addAction(text)
            act.setCheckable(True)
            act.setData(key)
            act.setToolTip(tip)
            act.setChecked(key == current)
            self.cpu_arithmetic_group.addAction(act)
        self.cpu_arithmetic_group.triggered.connect(self._cpu_arithmetic_chosen)
        self.analysis.runner.set_cpu_bf16(current if stored is not None else None)

    def _cpu_arithmetic_chosen(self, act) -> None:
        key = str(act.data())
        self.settings.setValue("analysis/cpu_bf16", key)
        self.analysis.runner.set_cpu_bf16(key)
        self.statusBar().showMessage(f"CPU arithmetic: {act.text().replace('&', '')} (from the next run)", 5000)

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        paths = self.recent.paths()
        for i, p in enumerate(paths):
            act = menu.addAction(f"&{(i + 1) % 10}  {Path(p).name}")
            act.setToolTip(p)
            act.setStatusTip(p)
            act.triggered.connect(lambda _=False, p=p: self.open_recent(p))
        if not paths:
            menu.addAction("(none)").setEnabled(False)
        menu.addSeparator()
        clear = menu.addAction("&Clear")
        clear.setEnabled(bool(paths))
        clear.triggered.connect(self._clear_recent)

    def _clear_recent(self) -> None:
        self.recent.clear()
        self._fill_recent_menu()

    # ----------------------------------------------------------------- loader signals
    def _on_load_started(self, request) -> None:
        self.busy_label.setText(f"Loading {request.display_name}…")
        self.busy_label.show()
        self.busy_bar.show()

    def _end_busy(self) -> None:
        if not self.loader.busy:
            self.busy_label.hide()
            self.busy_bar.hide()

    def _on_loaded(self, result: LoadResult) -> None:
        self._end_busy()
        mg = result.micrograph
        from ..workflows.analyse import apply_filename_hints

        apply_filename_hints(mg)  # a mode / pixel size the file lacks, from its name (mg.assumed, mg.notes)
        old = self.micrograph
        keep = (old is not None and old.path is not None and mg.path is not None
                and Path(old.path) == Path(mg.path) and old.shape == mg.shape)
        self.micrograph = mg
        self.image_view.set_micrograph(mg, result.first_frame, result.levels, keep_view=keep)
        self.info_dock.set_micrograph(mg, result.warnings)
        self.analysis.set_micrograph(mg)
        self.setWindowTitle(f"{mg.name} — {APP_NAME}")
        if mg.path is not None and result.request.sample is None:
            self.recent.add(mg.path)
            self._fill_recent_menu()
        msg = f"Opened {mg.name}"
        if result.warnings:
            msg += " — " + "; ".join(result.warnings)
        self.statusBar().showMessage(msg, 10000)
        self.imageLoaded.emit(mg)

    def _on_load_failed(self, failure: LoadFailure) -> None:
        self._end_busy()
        title = "Could not open file" if failure.expected else "Unexpected error"
        self._error(title, failure.message, failure.details)

    def _error(self, title: str, text: str, details: str | None = None) -> None:
        self.statusBar().showMessage(text.splitlines()[0] if text else title, 10000)
        if self.interactive:
            dialogs.show_error(self, title, text, details)
        else:
            print(f"{title}: {text}", file=sys.stderr)
            if details:
                print(details, file=sys.stderr)
        self.loadFailed.emit(text)

    # ================================================================= models
    def training_manager(self):
        """The (one) :class:`~atomlens.gui.training_manager.TrainingManager`, made on first use."""
        if self._training is None:
            from .training_manager import TrainingManager

            self._training = TrainingManager(self)
            show = lambda *_: self.statusBar().showMessage(self._training.status_text(), 10000)
            self._training.progress.connect(show)
            self._training.statusChanged.connect(show)
        return self._training

    def use_model(self, path) -> bool:
        """Pick the bundle at `path` in the analysis dock and analyse the open image with it
        (the retrain dialog's "Use the new model")."""
        if not self.analysis_dock.select_model(path):
            self.statusBar().showMessage(f"{path} is not an atom-finding model and cannot be picked", 8000)
            return False
        self.statusBar().showMessage(f"Analysing with {Path(path).name}", 5000)
        if self.micrograph is not None:
            self.analysis.run_current()
        return True

    def open_retrain(self):
        """Show the (non-modal) Retrain dialog for the open image and its annotations."""
        from .retrain_dialog import RetrainDialog

        context = {"micrograph": self.micrograph, "frame": self.analysis.current_frame(),
                   "annotated": self.annotate.training_context(),
                   "current_model": self.analysis_dock.model_path()}
        if self._retrain_dialog is not None:
            self._retrain_dialog.close()
            self._retrain_dialog.deleteLater()
        self._retrain_dialog = RetrainDialog(self, self.training_manager(), context)
        self._retrain_dialog.modelChosen.connect(self.use_model)
        self._retrain_dialog.show()
        return self._retrain_dialog

    def open_model_manager(self):
        """Show the (non-modal) model manager."""
        from .model_manager import ModelManagerDialog

        if self._model_dialog is None:
            self._model_dialog = ModelManagerDialog(self, self.training_manager())
            self._model_dialog.modelsChanged.connect(self.analysis_dock.refresh_models)
        self._model_dialog.show()
        self._model_dialog.raise_()
        return self._model_dialog

    # ================================================================= drag and drop
    @staticmethod
    def _local_files(mime: QtCore.QMimeData) -> list[str]:
        if not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if self._local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QtGui.QDragMoveEvent) -> None:
        if self._local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        files = self._local_files(event.mimeData())
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_file(files[0])
        if len(files) > 1:
            self.statusBar().showMessage(
                f"{len(files)} files dropped; opened {Path(files[0]).name} only", 10000)

    # ================================================================= image actions
    def ask_pixel_size(self) -> None:
        mg = self.micrograph
        if mg is None:
            self.statusBar().showMessage("Open an image first.", 5000)
            return
        value = dialogs.ask_px_size_nm(self, mg.px_size_nm, mg.name)
        if value is not None:
            self.set_pixel_size_nm(value)

    def set_pixel_size_nm(self, px_size_nm: float | None) -> None:
        """Set (None: clear) the pixel size of the open image (nm) and refresh the scale bar,
        readouts and the Analysis dock."""
        mg = self.micrograph
        mg.set_px_size_nm(px_size_nm)
        self.image_view.update_calibration()
        self.info_dock.update_summary(mg)
        self.info_dock.set_notes(list(mg.notes))
        self.analysis.calibration_changed()
        self.statusBar().showMessage("Calibration cleared" if px_size_nm is None
                                     else f"Pixel size set to {px_size_nm * 1000:.4g} pm", 5000)

    # ================================================================= analysis
    def centre_on(self, x_px: float, y_px: float) -> None:
        """Pan the view (keeping the zoom) so that image pixel (x, y) is at its centre."""
        self.image_view.centre_on(x_px, y_px)

    def highlight_atom(self, index: int | None) -> None:
        """Draw a ring around atom `index` of the displayed result and centre the view on it
        (None removes the ring)."""
        atoms = self.overlays.atoms
        atoms.set_highlight(index)
        if index is not None:
            self.centre_on(float(atoms.atoms.x[index]), float(atoms.atoms.y[index]))

    def auto_contrast(self) -> None:
        levels = self.image_view.auto_levels()
        if levels is not None:
            self.statusBar().showMessage(f"Contrast {levels[0]:.4g} … {levels[1]:.4g}", 3000)

    def _on_cursor(self, text: str) -> None:
        self.readout_label.setText(text)
