"""The Analysis dock: model, device, pixel size, detection settings, Run / Cancel, progress.

The dock only holds the settings and shows state; :mod:`.analysis_controller` acts on its
signals.  Model bundles are listed with :func:`atomlens.nn.bundle.list_bundles` (bundled and
the user's own); torch is never imported here.
"""

from __future__ import annotations

import html

from PyQt5 import QtCore, QtWidgets, sip

from ..analysis.domain import OOD_PREFIX, is_ood_note
from ..analysis.material import MATERIALS
from ..workflows.analyse import units_nm
from ..workflows.models import default_model_name
from .widgets import notes_html, notes_label

__all__ = ["AnalysisDock", "material_combo", "mode_group", "REFINE_MODES",
           "MODE_GROUPS"]

#: Refinement modes offered (value, label).
REFINE_MODES = (("centroid", "Centroid"), ("gaussian", "Gaussian fit"), ("none", "None (peak pixel)"))
#: Units offered for the pixel size (unit -> nm).
PX_UNITS = units_nm("pm", "nm", suffix="/px")
#: Imaging modes that share a remembered model (upper-case mode -> group).  Dark-field modes show
#: atoms bright (Z contrast), bright-field ones dark; differential phase contrast and scanning
#: probes are kinds of their own.  A mode not listed is a group of its own.
MODE_GROUPS = {"HAADF": "HAADF/ADF", "ADF": "HAADF/ADF", "MAADF": "HAADF/ADF", "LAADF": "HAADF/ADF",
               "DF": "HAADF/ADF", "STEM": "HAADF/ADF", "ABF": "ABF/BF", "BF": "ABF/BF", "IDPC": "iDPC/DPC",
               "DPC": "iDPC/DPC", "TEM": "TEM", "STM": "STM", "SPM": "STM", "AFM": "AFM"}
#: The lattice period an uncalibrated image is assumed to have (atomlens.nn.infer.TYPICAL_PERIOD_A,
#: which imports torch: the tests check that the two agree).
LATTICE_PERIOD_A = 2.5
_STYLE_OOD = ("QLabel { background: #fde2e1; color: #7a1010; border: 1px solid #e08080; border-radius: 4px;"
              " padding: 3px; }")
_STYLE_ASSUMED = ("QLabel { background: #fff3cd; color: #5c4400; border: 1px solid #e0c060; border-radius: 4px;"
                  " padding: 3px; }")


def edge_margin_spin(value: float = 0.0) -> QtWidgets.QDoubleSpinBox:
    """Spin box for the edge margin in pixels (0 keeps the columns cut by the image edge)."""
    spin = QtWidgets.QDoubleSpinBox()
    spin.setRange(0.0, 200.0)
    spin.setDecimals(1)
    spin.setSingleStep(1.0)
    spin.setSuffix(" px")
    spin.setSpecialValueText("none (keep edge columns)")
    spin.setKeyboardTracking(False)
    spin.setValue(float(value))
    spin.setToolTip("Leave out the atoms whose centre lies closer than this to the image edge: columns cut by "
                    "the edge are localised less well. AtomNet's published position lists use 5 px.")
    return spin


def material_combo(current: str | None = None) -> QtWidgets.QComboBox:
    """A combo box of material hints ("not given", then the materials; data: the name or None)."""
    combo = QtWidgets.QComboBox()
    combo.addItem("not given", None)
    for name in MATERIALS:
        combo.addItem(f"{name} (2H monolayer)", name)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    combo.setToolTip(
        "What the sample is, if you know it. In a 2H TMD it tells the metal sublattice from the\n"
        "chalcogen one, so that a Se2 -> Se column in MoSe2 is called a vacancy and a Mo column in\n"
        "WSe2 a dopant (the network alone confuses the two). Other materials: leave it 'not given'.")
    return combo


def mode_group(mode) -> str | None:
    """The group of imaging `mode` whose images share a remembered model (see :data:`MODE_GROUPS`);
    None for an image with no mode: a model picked for one is not remembered for the next."""
    m = str(mode or "").strip()
    return MODE_GROUPS.get(m.upper(), m.upper()) if m else None


def _migrated_models(old: dict, card_mode) -> dict:
    """Model memory {group: path} from the format before per-mode memory ({"stm"|"stem": path},
    one remembered model for all STEM images and one for all scanning-probe images).  Each model
    goes to the group of its own imaging mode (`card_mode(path)`), so that an STM model picked on
    an image without a mode, which was then used for every STEM image, is kept for STM only."""
    out = {}
    for family, path in old.items():
        group = mode_group(card_mode(path)) or ("STM" if str(family).lower() == "stm" else "HAADF/ADF")
        out.setdefault(group, path)
    return out


class _PopupCombo(QtWidgets.QComboBox):
    """A combo box that announces its popup (``aboutToShowPopup``) before showing it."""

    aboutToShowPopup = QtCore.pyqtSignal()

    def showPopup(self) -> None:
        self.aboutToShowPopup.emit()
        super().showPopup()


class AnalysisDock(QtWidgets.QDockWidget):
    """Settings and controls of the analysis.

    Signals: ``runRequested()``, ``runAllRequested()``, ``cancelRequested()``,
    ``retrainRequested()`` (the "Retrain…" button under an out-of-domain note; when nothing is
    connected to it the window's ``act_retrain`` action is triggered), ``thresholdChanged(float)``,
    ``refineChanged(str)``, ``materialChanged(object)`` (a
    material name or None), ``edgeMarginChanged(float)`` (px), ``pxSizeEdited(object)`` (nm, or None
    for "estimate"), ``devicesWanted()`` (the device list is opened before it was probed:
    the devices are otherwise reported after the first run, which imports torch anyway).
    """

    runRequested = QtCore.pyqtSignal()
    runAllRequested = QtCore.pyqtSignal()
    cancelRequested = QtCore.pyqtSignal()
    retrainRequested = QtCore.pyqtSignal()
    thresholdChanged = QtCore.pyqtSignal(float)
    refineChanged = QtCore.pyqtSignal(str)
    materialChanged = QtCore.pyqtSignal(object)
    edgeMarginChanged = QtCore.pyqtSignal(float)
    pxSizeEdited = QtCore.pyqtSignal(object)
    devicesWanted = QtCore.pyqtSignal()

    def __init__(self, parent=None):
        super().__init__("Analysis", parent)
        self.setObjectName("AnalysisDock")
        self._mode = None
        self._has_image = False
        self._chosen: dict = {}  # imaging-mode group (mode_group) -> model path the user picked
        self._assumed: dict = {}  # the open image's assumptions (Micrograph.assumed)
        self._picked_here = False  # a model was picked by hand for this image
        self.cam_path: str | None = None
        self.bundles: list = []  # (name, path, origin, card or None)
        body = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(body)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.AllNonFixedFieldsGrow)

        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.activated.connect(self._on_model_picked)
        refresh = QtWidgets.QToolButton()
        refresh.setText("⟳")
        refresh.setToolTip("Look for new model bundles")
        refresh.clicked.connect(self.refresh_models)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(refresh)
        form.addRow("Model:", row)
        self.model_reason = QtWidgets.QLabel()  # why this model: default, remembered, assumed mode
        self.model_reason.setTextFormat(QtCore.Qt.RichText)
        self.model_reason.setWordWrap(True)
        self.model_reason.hide()
        form.addRow(self.model_reason)
        self.cam_check = QtWidgets.QCheckBox("Defect heatmaps (CAM)")
        form.addRow("", self.cam_check)
        self.tta_check = QtWidgets.QCheckBox("Average 8 views")
        self.tta_check.setToolTip("Run the networks on the 8 rotations and mirror images of the image and average "
                                  "them (test-time augmentation): about 4x the time of the default, which averages "
                                  "the atom finder over the image and its half turn; fewer missed weak features. "
                                  "Applies from the next Run.")
        form.addRow("", self.tta_check)

        self.device_combo = _PopupCombo()
        self.device_combo.aboutToShowPopup.connect(self._want_devices)
        self._devices_known = False
        self.device_combo.addItem("Auto", "auto")
        self.device_combo.addItem("CPU", "cpu")
        self.device_used = QtWidgets.QLabel("")
        self.device_used.setStyleSheet("color: gray;")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.device_combo, 1)
        row.addWidget(self.device_used)
        form.addRow("Device:", row)

        self.px_spin = QtWidgets.QDoubleSpinBox()
        self.px_spin.setDecimals(3)  # pm/px at first; 5 for nm/px
        self._px_nm: float | None = None  # the exact value (the field shows it rounded)
        self.px_spin.setRange(0.0, 1e6)
        self.px_spin.setSpecialValueText("estimate")
        self.px_spin.setKeyboardTracking(False)
        self.px_spin.setToolTip("Pixel size used by the model; 0 = estimate it from the lattice")
        self.px_unit = QtWidgets.QComboBox()
        self.px_unit.addItems(list(PX_UNITS))
        self._px_unit = "pm/px"
        self.px_unit.currentTextChanged.connect(self._convert_unit)
        self.px_spin.editingFinished.connect(self._on_px_edited)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.px_spin, 1)
        row.addWidget(self.px_unit)
        form.addRow("Pixel size:", row)
        self.px_notice = QtWidgets.QLabel()
        self.px_notice.setTextFormat(QtCore.Qt.RichText)  # escaped text: shown as typed
        self.px_notice.setWordWrap(True)
        self.px_notice.setStyleSheet("QLabel { background: #fff3cd; color: #5c4400; border: 1px solid #e0c060;"
                                     " border-radius: 4px; padding: 3px; }")
        self.px_notice.hide()
        form.addRow(self.px_notice)

        self.threshold_slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.threshold_slider.setRange(5, 95)
        self.threshold_spin = QtWidgets.QDoubleSpinBox()
        self.threshold_spin.setRange(0.05, 0.95)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setKeyboardTracking(False)
        self.threshold_slider.setValue(50)
        self.threshold_spin.setValue(0.5)
        self.threshold_slider.valueChanged.connect(lambda v: self._set_threshold(v / 100.0))
        self.threshold_spin.valueChanged.connect(self._set_threshold)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.threshold_slider, 1)
        row.addWidget(self.threshold_spin)
        form.addRow("Threshold:", row)
        self.refine_combo = QtWidgets.QComboBox()
        for value, label in REFINE_MODES:
            self.refine_combo.addItem(label, value)
        self.refine_combo.currentIndexChanged.connect(lambda _i: self.refineChanged.emit(self.refine()))
        form.addRow("Refinement:", self.refine_combo)
        self.material_combo = material_combo()
        self.material_combo.currentIndexChanged.connect(lambda _i: self.materialChanged.emit(self.material()))
        form.addRow("Material:", self.material_combo)
        self.edge_spin = edge_margin_spin()
        self.edge_spin.valueChanged.connect(lambda v: self.edgeMarginChanged.emit(float(v)))
        form.addRow("Edge margin:", self.edge_spin)

        self.run_button = QtWidgets.QPushButton("Run (F5)")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.runRequested)
        self.run_all_button = QtWidgets.QPushButton("Run on all frames")
        self.run_all_button.clicked.connect(self.runAllRequested)
        self.run_all_button.hide()
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.run_button, 1)
        row.addWidget(self.run_all_button, 1)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)
        form.addRow(self.progress)
        self.status = QtWidgets.QLabel("Open an image, then press Run (F5).")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self.notes = notes_label()
        form.addRow(self.notes)
        # an image outside what the model knows (atomlens.analysis.domain): said apart, with a way on
        self.ood_notes = QtWidgets.QLabel()
        self.ood_notes.setTextFormat(QtCore.Qt.RichText)
        self.ood_notes.setWordWrap(True)
        self.ood_notes.setStyleSheet(_STYLE_OOD)
        self.ood_notes.hide()
        form.addRow(self.ood_notes)
        self.retrain_button = QtWidgets.QPushButton("Retrain on images like this…")
        self.retrain_button.setToolTip("Model > Retrain…: fine-tune the model on simulations and on your corrected "
                                       "atoms of this image (Annotate mode), so that it learns images like this one")
        self.retrain_button.clicked.connect(self._on_retrain_clicked)
        self.retrain_button.hide()
        form.addRow(self.retrain_button)
        for combo in body.findChildren(QtWidgets.QComboBox):  # a long model name must not widen the dock
            combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        scroll = QtWidgets.QScrollArea()  # small windows scroll instead of growing, downwards only:
        scroll.setWidgetResizable(True)  # the dock is as wide as its controls, so the notes wrap in view
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        scroll.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self.setWidget(scroll)
        self.refresh_models()
        self.set_image(None)

    # ---------------------------------------------------------------- models
    def refresh_models(self) -> None:
        """List the segmentation bundles in the picker and find a CAM bundle."""
        from atomlens.workflows.models import BundleError, list_bundles, read_card

        current = self.model_path()
        self.bundles, cams = [], []
        for name, path, origin in list_bundles():
            try:
                card = read_card(path)
            except BundleError:
                card = None
            self.bundles.append((name, str(path), origin, card))
            if card is not None and card.get("task") == "cam":
                cams.append((name != "defect-cam", origin != "user", name, str(path)))  # user's first
        self.model_combo.clear()
        for name, path, origin, card in self.bundles:
            if card is not None and card.get("task") != "segmentation":
                continue
            label = name + (" (yours)" if origin == "user" else "")
            if card is None:
                label += " — damaged card"
            self.model_combo.addItem(label, path)
            i = self.model_combo.count() - 1
            if card is None:
                self.model_combo.model().item(i).setEnabled(False)
            else:
                self.model_combo.setItemData(i, (f"{card['name']} {card.get('version', '')}, "
                                                 f"{card.get('mode', '?')} images, trained at "
                                                 f"{float(card['px_size_A']) * 100:.3g} pm/px\n{path}"),
                                             QtCore.Qt.ToolTipRole)
        self.cam_path = min(cams)[-1] if cams else None
        self.cam_check.setEnabled(self.cam_path is not None)
        if self.cam_path is None:
            self.cam_check.setChecked(False)
            self.cam_check.setToolTip("No defect-CAM model is installed")
        else:
            self.cam_check.setToolTip(f"Also run {self.cam_path}")
        if current and self.model_combo.findData(current) >= 0:
            self.model_combo.setCurrentIndex(self.model_combo.findData(current))
        else:
            self._select_default()

    def _default_path(self, mode) -> str | None:
        names = [b[0] for b in self.bundles if b[3] is not None and b[3].get("task") == "segmentation"]
        name = default_model_name(mode, names)
        paths = [b[1] for b in self.bundles if b[0] == name]
        return paths[-1] if paths else None  # a user model shadows the bundled one of the same name

    def _select_default(self) -> None:
        """Pick the model for the open image's mode: the one remembered for its group, else the default."""
        self._picked_here = False
        chosen = self._chosen.get(mode_group(self._mode))
        if chosen and self.model_combo.findData(chosen) >= 0:
            self.model_combo.setCurrentIndex(self.model_combo.findData(chosen))
        else:
            path = self._default_path(self._mode)
            if path is not None:
                self.model_combo.setCurrentIndex(self.model_combo.findData(path))
        self._show_reason()

    def _on_model_picked(self, _index: int) -> None:
        """The user picked a model: remember it for this image's mode group (none: this image only)."""
        group = mode_group(self._mode)
        self._picked_here = True
        if group is not None:
            path = self.model_path()
            if path == self._default_path(self._mode):
                self._chosen.pop(group, None)  # back to the default: nothing to remember
            else:
                self._chosen[group] = path
        self._show_reason()

    def _card_mode(self, path) -> str | None:
        """The imaging mode of the bundle at `path` (its card), or None."""
        for _name, p, _origin, card in self.bundles:
            if p == path and card is not None:
                return card.get("mode")
        from pathlib import Path

        from atomlens.workflows.models import BundleError, read_card

        try:
            return read_card(Path(path)).get("mode")
        except (BundleError, OSError, ValueError):
            return None

    @property
    def model_picked_by_hand(self) -> bool:
        """Whether the user picked the model for the open image (not the mode's default or
        the remembered one)."""
        return self._picked_here

    def model_reason_text(self) -> tuple[str, bool]:
        """(why this model is chosen, whether it rests on an assumption about the image)."""
        path = self.model_path()
        if not self._has_image or path is None:
            return "", False
        group = mode_group(self._mode)
        name = self.model_combo.currentText()
        if group is None:
            if self._picked_here:
                return (f"No imaging mode in the file: {name} picked for this image only "
                        "(not remembered for other images)."), True
            assumed = self._card_mode(path) or "HAADF"
            return (f"No imaging mode in the file: {assumed} assumed ({name}). Pick another model if "
                    "this is another kind of image."), True
        images = f"{group} images"
        if self._chosen.get(group) == path:
            why = f"{'picked by hand, ' if self._picked_here else ''}remembered for {images}"
        elif path == self._default_path(self._mode):
            why = f"default for {images}"
        else:
            why = f"picked by hand for this image (the default for {images} is not installed)"
        from_name = self._assumed.get("mode")
        if from_name:
            return f"{from_name[0].upper()}{from_name[1:]}: {why}. Pick another model to override.", True
        return f"{name}: {why}.", False

    def _show_reason(self) -> None:
        text, assumed = self.model_reason_text()
        self.model_reason.setText(html.escape(text, quote=False))
        self.model_reason.setStyleSheet(_STYLE_ASSUMED if assumed else "color: gray;")
        self.model_reason.setVisible(bool(text))

    def select_model(self, path) -> bool:
        """Choose the bundle at `path` in the picker (as if the user picked it), looking for new
        bundles first if it is not listed; False when it cannot be picked (e.g. not a
        segmentation model, or a damaged card)."""
        from pathlib import Path

        target = Path(path).resolve()
        for attempt in range(2):
            for i in range(self.model_combo.count()):
                data = self.model_combo.itemData(i)
                if data and Path(data).resolve() == target and self.model_combo.model().item(i).isEnabled():
                    self.model_combo.setCurrentIndex(i)
                    self._on_model_picked(i)
                    return True
            if attempt == 0:
                self.refresh_models()
        return False

    def model_path(self) -> str | None:
        """Folder of the chosen segmentation bundle (None when there is none)."""
        return self.model_combo.currentData()

    def cam_model(self) -> str | None:
        """Folder of the CAM bundle when the CAM box is ticked, else None."""
        return self.cam_path if self.cam_check.isChecked() and self.cam_check.isEnabled() else None

    # ---------------------------------------------------------------- device
    def _want_devices(self) -> None:
        if not self._devices_known:
            self._devices_known = True  # ask once
            self.devicesWanted.emit()

    def set_devices(self, devices: list) -> None:
        """Offer `devices` (e.g. ["cpu", "cuda"]) besides Auto."""
        self._devices_known = True
        for dev in devices:
            if self.device_combo.findData(dev) < 0:
                self.device_combo.addItem(dev.upper() if dev != "cpu" else "CPU", dev)

    def device(self) -> str:
        return self.device_combo.currentData()

    # ---------------------------------------------------------------- pixel size
    def set_image(self, mg) -> None:
        """Adopt the calibration, mode, assumptions (``mg.assumed``) and frame count of the
        micrograph `mg` (None: none open), and choose the model for its imaging mode."""
        self._mode = None if mg is None else mg.mode
        self._has_image = mg is not None
        self._assumed = dict(getattr(mg, "assumed", None) or {})
        self.set_px_size_nm(None if mg is None else mg.px_size_nm, self._assumed.get("px_size"))
        self.run_all_button.setVisible(mg is not None and mg.is_stack)
        self._select_default()
        self.set_notes([])
        self.device_used.setText("")
        self.set_status("Press Run (F5) to find the atoms." if mg is not None
                        else "Open an image, then press Run (F5).")
        self.progress.setValue(0)

    def set_px_size_nm(self, px_size_nm, assumed: str | None = None) -> None:
        """Show `px_size_nm` (None: "estimate", with the uncalibrated notice); `assumed`: where a
        pixel size the file does not give came from (shown as an assumption to override)."""
        self._px_nm = None if px_size_nm is None else float(px_size_nm)
        if assumed is None:
            self._assumed.pop("px_size", None)
        else:
            self._assumed["px_size"] = assumed
        self.px_spin.blockSignals(True)
        self.px_spin.setValue(0.0 if px_size_nm is None else px_size_nm / PX_UNITS[self._px_unit])
        self.px_spin.blockSignals(False)
        self._value_shown = self.px_spin.value()
        if px_size_nm is None and self._has_image:
            self.set_px_notice("This image has no pixel size: the scale will be estimated from the "
                               f"lattice, its period taken as {LATTICE_PERIOD_A:g} Å. Enter the pixel size "
                               "for reliable results.")
        elif assumed and self._has_image:
            self.set_px_notice(f"{assumed[0].upper()}{assumed[1:]}: an assumption. Enter the pixel size "
                               "to override.")
        else:
            self.set_px_notice(None)

    def set_px_notice(self, text: str | None) -> None:
        self.px_notice.setText(html.escape(text or "", quote=False))
        self.px_notice.setVisible(bool(text))

    def px_size_nm(self) -> float | None:
        """The pixel size for the analysis (nm), or None: estimate it."""
        return self._px_nm

    def _convert_unit(self, unit: str) -> None:
        nm = self._px_nm
        self._px_unit = unit
        self.px_spin.setDecimals(5 if unit == "nm/px" else 3)
        self.set_px_size_nm(nm, self._assumed.get("px_size"))

    def _on_px_edited(self) -> None:
        v = self.px_spin.value()
        if v != self._value_shown:
            self._value_shown = v
            self._px_nm = None if v <= 0 else v * PX_UNITS[self._px_unit]
            self.pxSizeEdited.emit(self._px_nm)

    # ---------------------------------------------------------------- detection settings
    def threshold(self) -> float:
        return round(self.threshold_spin.value(), 2)

    def set_threshold(self, value: float) -> None:
        self._set_threshold(float(value))

    def _set_threshold(self, value: float) -> None:
        value = round(min(0.95, max(0.05, value)), 2)
        for w, v in ((self.threshold_slider, round(value * 100)), (self.threshold_spin, value)):
            if w.value() != v:
                w.blockSignals(True)
                w.setValue(v)
                w.blockSignals(False)
        self.thresholdChanged.emit(value)

    def tta(self) -> bool:
        """Average the networks over the 8 rotations and mirror images."""
        return self.tta_check.isChecked()

    def refine(self) -> str:
        return self.refine_combo.currentData()

    def material(self) -> str | None:
        """The material hint (a name from atomlens.analysis.material.MATERIALS) or None."""
        return self.material_combo.currentData()

    def edge_margin(self) -> float:
        """Atoms within this many pixels of an image edge are left out (0: none)."""
        return float(self.edge_spin.value())

    def set_material(self, name: str | None) -> None:
        i = self.material_combo.findData(name)
        self.material_combo.setCurrentIndex(max(i, 0))

    # ---------------------------------------------------------------- saved settings
    def state(self) -> dict:
        """The choices worth keeping between sessions (JSON-friendly)."""
        dev = self.device()
        return {"threshold": self.threshold(), "refine": self.refine(), "edge_margin_px": self.edge_margin(),
                "cam": self.cam_check.isChecked(),
                "tta": self.tta(), "device": dev if dev in ("auto", "cpu") else "auto",
                "models_by_mode": {k: v for k, v in self._chosen.items() if v}}

    def restore_state(self, state: dict) -> None:
        """Apply :meth:`state`'s output; unknown, damaged or stale entries are ignored."""
        from pathlib import Path

        if not isinstance(state, dict):
            return
        try:
            if "threshold" in state:
                self.set_threshold(float(state["threshold"]))
            if self.refine_combo.findData(state.get("refine")) >= 0:
                self.set_refine(state["refine"])
            if "edge_margin_px" in state:
                self.edge_spin.setValue(float(state["edge_margin_px"]))
            if self.cam_check.isEnabled():
                self.cam_check.setChecked(bool(state.get("cam", False)))
            self.tta_check.setChecked(bool(state.get("tta", False)))
            i = self.device_combo.findData(state.get("device"))
            if i >= 0:
                self.device_combo.setCurrentIndex(i)
            models = state.get("models_by_mode")
            if models is None and isinstance(state.get("models"), dict):  # settings written before the per-mode memory
                models = _migrated_models({str(k): str(v) for k, v in state["models"].items() if v},
                                          self._card_mode)
            if isinstance(models, dict):  # only models that still exist (one may have been deleted)
                self._chosen.update({str(k): str(v) for k, v in models.items() if v and Path(str(v)).is_dir()})
                self._select_default()
        except (TypeError, ValueError):
            pass

    def set_refine(self, mode: str) -> None:
        self.refine_combo.setCurrentIndex(self.refine_combo.findData(mode))

    # ---------------------------------------------------------------- state display
    def set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.run_all_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        for w in (self.model_combo, self.device_combo, self.cam_check, self.tta_check, self.px_spin, self.px_unit):
            w.setEnabled(not busy and (w is not self.cam_check or self.cam_path is not None))

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(1000 * min(1.0, max(0.0, fraction)))))
        self.status.setText(message)

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #c00000;" if error else "")
        self.status.setText(text)

    def set_notes(self, notes: list) -> None:
        """Show the analysis's notes; those saying the image is outside what the model knows
        (:func:`atomlens.analysis.domain.is_ood_note`) apart, highlighted, with the Retrain button."""
        ood = [n for n in notes if is_ood_note(n)]
        rest = [n for n in notes if not is_ood_note(n)]
        text = notes_html(rest)
        ood_text = ""
        if ood:
            items = "<br>".join(f"• {html.escape(n[len(OOD_PREFIX):].strip())}" for n in ood)
            ood_text = (f"<b>This image looks {html.escape(OOD_PREFIX.rstrip(':'))}</b>; the atoms found may be "
                        f"few or wrong:<br>{items}<br>Correct a few atoms in Annotate mode (E), then retrain the "
                        "model on them.")
        changed = text != self.notes.text() or ood_text != self.ood_notes.text()
        self.notes.setText(text)
        self.notes.setVisible(bool(rest))
        self.ood_notes.setText(ood_text)
        self.ood_notes.setVisible(bool(ood))
        self.retrain_button.setVisible(bool(ood))
        if notes and changed:  # below the Run button: scrolled into view once laid out
            QtCore.QTimer.singleShot(0, self._show_notes)

    def out_of_domain(self) -> bool:
        """Whether the notes shown say the image is outside what the model knows."""
        return not self.ood_notes.isHidden()

    def _on_retrain_clicked(self) -> None:
        if self.receivers(self.retrainRequested) > 0:
            self.retrainRequested.emit()
            return
        act = getattr(self.window(), "act_retrain", None)  # the main window's Model > Retrain…
        if act is not None and act.isEnabled():
            act.trigger()

    def _show_notes(self) -> None:
        if sip.isdeleted(self):
            return
        area = self.widget()
        x = area.horizontalScrollBar().value()  # scroll down only, never sideways
        # the Retrain button first, then the topmost note: that one wins where not all fit
        for w in (self.retrain_button, self.ood_notes, self.notes):
            if not sip.isdeleted(w) and w.isVisible():
                area.ensureWidgetVisible(w, 0, 0)
        area.horizontalScrollBar().setValue(x)

    def set_device_used(self, device: str | None) -> None:
        self.device_used.setText(f"used: {device}" if device else "")
