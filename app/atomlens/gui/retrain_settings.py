"""The settings half of the retrain dialog: base model, simulation (structure, pixel size, mode,
noise, defects, augmentation), the user's annotated images and the training budget.

:meth:`SimSettingsWidget.settings` returns a plain dict for
:func:`~atomlens.workflows.finetune.build_finetune_recipe`; values are pre-filled from the open image
(calibration, imaging mode, a noise estimate from :mod:`atomlens.sim.estimate`) and from the
base model's recipe.  Lengths are shown in pm, as in the rest of the GUI; the simulation
works in Å.  The structure panels (custom unit cell, CIF file) and the defect rows are in
:mod:`.retrain_structure`, the annotated-image list in :mod:`.retrain_real`; their widgets are
also reachable as attributes of :class:`SimSettingsWidget` (``sites_table``, ``cif_info``,
``zone_edit``, ``defect_rows``, ``real_list``, ...).
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path

from PyQt5 import QtWidgets

from .retrain_real import RealImagesGroup
from .retrain_structure import (DEFECT_ROWS, STRUCTURE_NAMES, CifPanel, CustomCellPanel, DefectsGroup, dspin,
                                ispin, range_top)
from ..workflows.finetune import base_recipe, build_finetune_recipe

__all__ = ["DEFECT_ROWS", "MODES", "SimSettingsWidget"]

MODES = ("HAADF", "ADF", "ABF", "BF", "STM")


class SimSettingsWidget(QtWidgets.QWidget):
    """The form; see the module docstring.  `context` as for the retrain dialog, `models`
    as :func:`~.retrain_dialog.segmentation_models` returns."""

    def __init__(self, parent, context: dict, models: list):
        super().__init__(parent)
        self.context, self.models = context, models
        mg = context.get("micrograph")
        self._image = None
        if mg is not None:
            try:
                self._image = mg.frame(int(context.get("frame", 0) or 0))
            except Exception:  # noqa: BLE001 - no estimate then, never a crash
                self._image = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self._model_group())
        lay.addWidget(self._sim_group())
        lay.addWidget(self._defect_group())
        lay.addWidget(self._augment_group())
        lay.addWidget(self._real_group())
        lay.addWidget(self._budget_group())
        lay.addStretch(1)
        self._choose_initial_base()
        self._on_base_changed()

    # ================================================================= groups
    def _model_group(self):
        g = QtWidgets.QGroupBox("Model")
        f = QtWidgets.QFormLayout(g)
        self.base_combo = QtWidgets.QComboBox()
        for name, path, card in self.models:
            self.base_combo.addItem(f"{name}  ({card.get('mode', '?')})", str(path))
        self.base_combo.currentIndexChanged.connect(self._on_base_changed)
        self.base_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.base_combo.setMinimumContentsLength(18)
        self.base_info = QtWidgets.QLabel()
        self.base_info.setWordWrap(True)
        self.base_info.setStyleSheet("color: #555")
        self.name_edit = QtWidgets.QLineEdit()
        f.addRow("Start from:", self.base_combo)
        f.addRow("", self.base_info)
        f.addRow("New model name:", self.name_edit)
        return g

    def _sim_group(self):
        g = QtWidgets.QGroupBox("Simulation (matched to the open image)")
        f = QtWidgets.QFormLayout(g)
        self.mode_combo = QtWidgets.QComboBox()
        self.mode_combo.addItems(MODES)
        self.mode_combo.currentTextChanged.connect(self._on_mode_changed)
        f.addRow("Imaging mode:", self.mode_combo)
        self.image_px_spin = dspin(1.0, 500.0, 20.0, 2, 0.5, " pm/px")
        self.image_px_spin.setToolTip("The open image's pixel size (its calibration): used to estimate the dose")
        self.px_spin = dspin(1.0, 200.0, 20.0, 2, 0.5, " pm/px")
        self.px_spin.setToolTip("The pixel size the new model works at: simulations are drawn at it (±10 %) and "
                                "your images are resampled to it, in training and when the model is used")
        self.px_note = QtWidgets.QLabel()
        self.px_note.setWordWrap(True)
        self.px_note.setStyleSheet("color: #555")
        f.addRow("Image pixel size:", self.image_px_spin)
        f.addRow("Train at:", self.px_spin)
        f.addRow("", self.px_note)
        self.structure_combo = QtWidgets.QComboBox()
        self.structure_combo.addItem("Base model's mix (all its structures)", "mix")
        for name in STRUCTURE_NAMES:
            self.structure_combo.addItem(name, name)
        self.structure_combo.addItem("Custom unit cell…", "custom")
        self.structure_combo.addItem("From a CIF / ASE file…", "cif")
        self.structure_combo.currentIndexChanged.connect(self._on_structure_changed)
        self.structure_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.structure_combo.setMinimumContentsLength(18)
        f.addRow("Structure:", self.structure_combo)
        self.custom_panel = CustomCellPanel()
        self.cell_a, self.cell_b, self.cell_gamma = (self.custom_panel.cell_a, self.custom_panel.cell_b,
                                                     self.custom_panel.cell_gamma)
        self.sites_table = self.custom_panel.sites_table
        f.addRow(self.custom_panel)
        self.cif_panel = CifPanel()
        self.cif_edit, self.zone_edit, self.cif_info = (self.cif_panel.cif_edit, self.cif_panel.zone_edit,
                                                        self.cif_panel.cif_info)
        f.addRow(self.cif_panel)
        row = QtWidgets.QHBoxLayout()
        self.noise_label = QtWidgets.QLabel("Dose:")
        self.noise_spin = dspin(100.0, 1e8, 1e5, 0, 1000.0)
        self.estimate_button = QtWidgets.QPushButton("Estimate from image")
        self.estimate_button.clicked.connect(self.estimate_noise)
        row.addWidget(self.noise_spin, 1)
        row.addWidget(self.estimate_button)
        f.addRow(self.noise_label, row)
        self.noise_note = QtWidgets.QLabel()
        self.noise_note.setWordWrap(True)
        self.noise_note.setStyleSheet("color: #555")
        f.addRow("", self.noise_note)
        return g

    def _defect_group(self):
        self.defect_group = DefectsGroup()
        self.defect_note, self.defect_rows = self.defect_group.note, self.defect_group.rows
        return self.defect_group

    def _augment_group(self):
        g = QtWidgets.QGroupBox("Augmentation")
        f = QtWidgets.QFormLayout(g)
        self.rotation_check = QtWidgets.QCheckBox("Random lattice rotation")
        self.jiggle_spin = dspin(0.0, 50.0, 5.0, 1, 0.5, " pm")
        self.drift_spin = dspin(0.0, 300.0, 60.0, 1, 5.0, " pm")
        self.jitter_spin = dspin(0.0, 3.0, 0.4, 2, 0.05, " px")
        f.addRow("", self.rotation_check)
        f.addRow("Column jiggle (max.):", self.jiggle_spin)
        f.addRow("Scan drift (max.):", self.drift_spin)
        f.addRow("Scan-line noise (max.):", self.jitter_spin)
        return g

    def _real_group(self):
        self.real_group = g = RealImagesGroup(self.context)
        self.real_list, self.real_slider, self.real_label, self.holdout_spin = (g.real_list, g.real_slider,
                                                                                g.real_label, g.holdout_spin)
        return g

    def _budget_group(self):
        g = QtWidgets.QGroupBox("Training")
        f = QtWidgets.QFormLayout(g)
        self.steps_spin = ispin(1, 1_000_000, 400)
        self.batch_spin = ispin(1, 512, 12)
        self.images_label = QtWidgets.QLabel()
        self.images_label.setWordWrap(True)
        self.images_label.setStyleSheet("color: #555")
        self.pool_spin = ispin(0, 100_000, 0)
        self.pool_spin.setSpecialValueText("endless stream")
        self.pool_spin.setSingleStep(100)
        self.pool_spin.setToolTip("0: every training image is a new simulation. N: simulate N images once and "
                                  "reuse them, rotated and mirrored (faster where simulating is the bottleneck, "
                                  "less varied)")
        for s in (self.steps_spin, self.batch_spin, self.pool_spin):
            s.valueChanged.connect(self._update_images_label)
        self.minutes_spin = dspin(0.1, 24 * 60, 15.0, 1, 1.0, " min")
        self.device_combo = QtWidgets.QComboBox()
        for label, val in (("Auto (GPU if there is one)", "auto"), ("CPU", "cpu"), ("CUDA GPU", "cuda")):
            self.device_combo.addItem(label, val)
        self.lr_spin = dspin(1e-5, 0.1, 1e-3, 5, 1e-4)
        self.patch_spin = ispin(32, 512, 160, " px")
        self.patch_spin.setSingleStep(16)
        self.val_spin = ispin(1, 512, 16)
        self.workers_spin = ispin(-1, max(1, (os.cpu_count() or 2) - 1), -1)
        self.workers_spin.setSpecialValueText("as the recipe")
        f.addRow("Steps:", self.steps_spin)
        f.addRow("Batch size:", self.batch_spin)
        f.addRow("Simulated images:", self.pool_spin)
        f.addRow("", self.images_label)
        f.addRow("Time limit:", self.minutes_spin)
        f.addRow("Device:", self.device_combo)
        f.addRow("Learning rate:", self.lr_spin)
        f.addRow("Patch size:", self.patch_spin)
        f.addRow("Validation images:", self.val_spin)
        f.addRow("Simulation workers:", self.workers_spin)
        return g

    def _update_images_label(self, *_):
        n = self.steps_spin.value() * self.batch_spin.value()
        pool = self.pool_spin.value()
        if pool and pool < n:
            self.images_label.setText(f"= {n:,} samples from {pool:,} simulated images, each seen about "
                                      f"{n / pool:.1f} times (rotated and mirrored); training stops at the time "
                                      "limit if that comes first")
        else:
            self.images_label.setText(f"= {n:,} new simulated images (none is repeated); training stops at the "
                                      "time limit if that comes first")

    # ================================================================= defaults
    def _choose_initial_base(self) -> None:
        cur = str(self.context.get("current_model") or "")
        mg = self.context.get("micrograph")
        mode = str(getattr(mg, "mode", "") or "").upper()
        pick = None
        for i, (name, path, card) in enumerate(self.models):
            if cur and (cur == name or cur == str(path) or Path(cur).name == name):
                pick = i
                break
        if pick is None and mode:
            want = "STM" if mode == "STM" else "HAADF"
            pick = next((i for i, (_n, _p, c) in enumerate(self.models) if c.get("mode") == want), None)
        self.base_combo.blockSignals(True)  # __init__ applies the base's defaults once
        self.base_combo.setCurrentIndex(pick or 0)
        self.base_combo.blockSignals(False)

    def base_model(self):
        """(name, folder, card) of the chosen base model; ValueError when there is none."""
        i = self.base_combo.currentIndex()
        if i < 0 or i >= len(self.models):
            raise ValueError("There is no atom-finding model to start from; install or import one first.")
        return self.models[i]

    def _on_base_changed(self, *_):
        try:
            name, _path, card = self.base_model()
        except ValueError:
            return
        self._recipe = rec = base_recipe(card)
        val = card.get("validation") or {}
        f1 = f", F1 {val['val_f1']:.3f} on simulations" if isinstance(val.get("val_f1"), float) else ""
        self.base_info.setText(f"{card.get('mode', '?')}, trained at {float(card['px_size_A']) * 100:.3g} pm/px{f1}")
        self.name_edit.setText(self._default_name(name))
        sim = rec["sim"]
        aug, noise = sim.get("augment") or {}, sim.get("noise") or {}
        self.rotation_check.setChecked(bool(aug.get("rotation", True)))
        self.jiggle_spin.setValue(100 * range_top(aug.get("jiggle_A"), 0.05))
        self.drift_spin.setValue(100 * range_top(aug.get("drift_A"), 0.6))
        self.jitter_spin.setValue(range_top(noise.get("jitter_px"), 0.4))
        self.batch_spin.setValue(int(rec.get("batch_size", 8)))
        self.lr_spin.setValue(float(rec.get("lr", 3e-3)) / 4)  # fine-tuning: a gentler rate
        shape = sim.get("shape") or [160, 160]
        self.patch_spin.setValue(int(min(shape)))
        self.val_spin.setValue(min(int(rec.get("val_n", 16)), 16))
        self._update_images_label()
        mg = self.context.get("micrograph")
        mode = str(getattr(mg, "mode", "") or "").upper()
        mode = {"DF": "ADF", "HAADF-STEM": "HAADF"}.get(mode, mode)
        self.mode_combo.blockSignals(True)
        self.mode_combo.setCurrentText(mode if mode in MODES else str(card.get("mode", "HAADF")).upper())
        self.mode_combo.blockSignals(False)
        self._set_px_default(card, mg, mode)
        self._on_structure_changed()
        self.estimate_noise()

    def _default_name(self, base: str) -> str:
        from ..workflows.models import list_bundles, user_models_dir

        taken = {n for n, _, _ in list_bundles()}
        stem = f"{base}-ft-{datetime.date.today():%Y%m%d}"
        name, k = stem, 1
        while name in taken or (user_models_dir() / name).exists():
            k += 1
            name = f"{stem}-{k}"
        return name

    def _set_px_default(self, card, mg, mode) -> None:
        """Image pixel size from the calibration; training at the base model's pixel size.

        The network always sees images resampled to the pixel size it was trained at, so the
        simulation matches a real image at the model's pixel size with the image's dose (e-/Å²,
        independent of the sampling).  Keeping the base model's pixel size keeps its learned
        features: fine-tuning at another one must first relearn the scale (measured: 60 steps
        at 12 instead of 20 pm/px lowered the F1 on the user's atoms from 0.98 to 0.94, at 20
        pm/px it rose to 0.99)."""
        base_px = float(card["px_size_A"])
        self.px_spin.setValue(base_px * 100)
        px_nm = getattr(mg, "px_size_nm", None)
        if px_nm:
            px_A = float(px_nm) * 10
            self.image_px_spin.setValue(px_A * 100)
            note = f"Image: {px_A * 100:.3g} pm/px from its calibration. "
        else:
            self.image_px_spin.setValue(base_px * 100)
            note = "The image has no calibration: its pixel size is taken as the model's. "
        self.px_note.setText(note + f"The new model works at {base_px * 100:.3g} pm/px like its base (images are "
                                    "resampled to it); a different value means relearning the scale.")
        if mode and mode not in MODES:
            self.px_note.setText(self.px_note.text() + f" The image's mode {mode!r} cannot be simulated: "
                                                       f"{self.mode_combo.currentText()} is used.")

    # ================================================================= reactions
    def _on_mode_changed(self, _mode: str) -> None:
        self.estimate_noise()

    def _on_structure_changed(self, *_):
        kind = self.structure_combo.currentData()
        self.custom_panel.setVisible(kind == "custom")
        self.cif_panel.setVisible(kind == "cif")
        self.defect_group.show_for(kind, self._recipe["sim"])

    def add_site(self, u: float, v: float, element: str) -> None:
        self.custom_panel.add_site(u, v, element)

    def set_cif(self, path) -> bool:
        """Use the crystal in `path` (read with ASE, projected along the zone axis); False
        with the reason shown when it cannot be read."""
        return self.cif_panel.set_cif(path)

    def estimate_noise(self) -> None:
        """Fill the noise setting from the image (or from the base recipe without one)."""
        stm = self.mode_combo.currentText() == "STM"
        noise = self._recipe["sim"].get("noise") or {}
        if stm:
            self.noise_label.setText("Noise σ:")
            self.noise_spin.setDecimals(2)
            self.noise_spin.setRange(0.01, 100.0)
            self.noise_spin.setSuffix(" pm")
            rng = noise.get("sigma_A") if isinstance(noise.get("sigma_A"), list) else [0.005, 0.05]
        else:
            self.noise_label.setText("Dose:")
            self.noise_spin.setDecimals(0)
            self.noise_spin.setRange(100.0, 1e8)
            self.noise_spin.setSuffix(" e⁻/Å²")
            rng = noise.get("dose_e_per_A2") if isinstance(noise.get("dose_e_per_A2"), list) else [5e3, 5e5]
        rng = [float(v) for v in rng]
        value, note = math.sqrt(rng[0] * rng[1]), "No image: the middle of the base recipe's range."
        if self._image is not None:
            from ..workflows.simulation import estimate_dose_or_noise

            mg = self.context.get("micrograph")
            try:
                e = estimate_dose_or_noise(self._image, "STM" if stm else "HAADF", self.image_px_spin.value() / 100,
                                           value_units=getattr(mg, "value_units", None),
                                           dose_range=rng, sigma_range=rng)
                value = e["value"]
                note = f"Estimated from the image ({e['method']})."
                if e["clamped"]:
                    note += " Clamped to the base recipe's range."
            except ValueError as exc:
                note = f"Could not estimate from the image ({exc}); the middle of the base recipe's range."
        self.noise_spin.setValue(value * 100 if stm else value)
        self.noise_note.setText(note + " Training draws from a third to three times this value.")

    # ================================================================= results
    def settings(self) -> dict:
        """The chosen settings (see :func:`~atomlens.workflows.finetune.build_finetune_recipe`)."""
        stm = self.mode_combo.currentText() == "STM"
        kind = self.structure_combo.currentData()
        st = {"kind": "named" if kind not in ("mix", "custom", "cif") else kind, "name": kind}
        if kind == "custom":
            st.update(self.custom_panel.cell())
        elif kind == "cif":
            st.update(self.cif_panel.structure())
        defects = self.defect_group.chosen()
        return {"name": self.name_edit.text().strip(), "mode": self.mode_combo.currentText(),
                "px_size_A": self.px_spin.value() / 100, "structure": st, "defects": defects,
                "noise": {"key": "sigma_A" if stm else "dose_e_per_A2",
                          "value": self.noise_spin.value() / 100 if stm else self.noise_spin.value()},
                "noise_spread": 3.0,
                "augment": {"rotation": self.rotation_check.isChecked(), "jiggle_A": self.jiggle_spin.value() / 100,
                            "drift_A": self.drift_spin.value() / 100, "jitter_px": self.jitter_spin.value()},
                "patch_px": self.patch_spin.value(), "steps": self.steps_spin.value(),
                "batch_size": self.batch_spin.value(), "time_limit_min": self.minutes_spin.value(),
                "sim_pool": self.pool_spin.value(),
                "device": self.device_combo.currentData(), "lr": self.lr_spin.value(), "val_n": self.val_spin.value(),
                "num_workers": None if self.workers_spin.value() < 0 else self.workers_spin.value(),
                "real_fraction": self.real_slider.value() / 100, "real_holdout": self.holdout_spin.value() / 100}

    def check_new_name(self, name: str) -> Path:
        """The folder for a new user model called `name`; ValueError when unusable or taken."""
        from ..workflows.models import BundleError, check_model_name as _check_name, list_bundles, user_models_dir

        try:
            name = _check_name(name)
        except BundleError as exc:
            raise ValueError(str(exc)) from None
        out = user_models_dir() / name
        if out.exists() or any(n == name for n, _, _ in list_bundles()):
            raise ValueError(f"a model named {name!r} already exists; choose another name")
        return out

    def validate_simulation(self, s: dict, card: dict, base_path) -> None:
        """Simulate one small image with the settings: ValueError with the reason if they fail."""
        from ..workflows.simulation import simulate

        if s["structure"]["kind"] == "cif" and not Path(s["structure"]["cif"]).is_file():
            raise ValueError("choose a CIF (or other crystal) file for the structure")
        rec, _ = build_finetune_recipe(card, base_path, {**s, "patch_px": 48})
        try:
            simulate(rec["sim"], 0)
        except Exception as exc:  # noqa: BLE001 - any configuration error becomes a message
            raise ValueError(f"these simulation settings do not work: {exc}") from None

    def annotated_images(self) -> list:
        """AnnotatedImage objects for the checked images (ValueError naming a bad one)."""
        return self.real_group.annotated_images()
