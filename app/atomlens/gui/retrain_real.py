"""The "Your corrected images" part of the retrain settings (:mod:`.retrain_settings`): which
annotated images to train on, the share of samples cut from them and the strip held back for
validation.
"""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtWidgets

from ..analysis.training_labels import holdout_row
from .retrain_structure import ispin

__all__ = ["RealImagesGroup"]


class RealImagesGroup(QtWidgets.QGroupBox):
    """A checkable list of the annotated images in `context` (``context["annotated"]``: dicts
    with ``name``, ``image``, ``annotations``, ``px_size_nm``), a share slider and the held-back
    percentage.  Disabled when there are no annotated images."""

    def __init__(self, context: dict, parent=None):
        super().__init__("Your corrected images", parent)
        self.context = context
        self.items = list(context.get("annotated") or [])
        v = QtWidgets.QVBoxLayout(self)
        self.real_list = QtWidgets.QListWidget()
        self.real_list.setFixedHeight(72)
        for i, d in enumerate(self.items):
            self._add_row(i, d)
        self.none_label = QtWidgets.QLabel("None yet: correct the atoms of an image (Annotate mode), or add "
                                           "training data exported earlier.")
        self.none_label.setWordWrap(True)
        self.none_label.setVisible(not self.items)
        v.addWidget(self.none_label)
        v.addWidget(self.real_list)
        self.add_button = QtWidgets.QPushButton("Add exported training data…")
        self.add_button.setToolTip("Images and annotations written by Annotate > Export as training data "
                                   "(<name>.annotations.json with its <name>.image.npy)")
        self.add_button.clicked.connect(self._ask_pairs)
        v.addWidget(self.add_button, 0, QtCore.Qt.AlignLeft)
        f = QtWidgets.QFormLayout()
        row = QtWidgets.QHBoxLayout()
        self.real_slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.real_slider.setRange(0, 100)
        self.real_slider.setValue(30)
        self.real_slider.setToolTip("The share of training samples cut from your images; the rest are simulated")
        self.real_label = QtWidgets.QLabel()
        self.real_label.setMinimumWidth(self.real_label.fontMetrics().horizontalAdvance("100 %") + 4)
        self.real_slider.valueChanged.connect(lambda val: self.real_label.setText(f"{val} %"))
        self.real_slider.valueChanged.emit(self.real_slider.value())
        row.addWidget(self.real_slider, 1)
        row.addWidget(self.real_label)
        f.addRow("Share of samples:", row)
        self.holdout_spin = ispin(0, 60, 20, " %")
        self.holdout_spin.setToolTip("A strip at the bottom of each image is never trained on; the F1 on "
                                     "the atoms you corrected or confirmed there is measured, and chooses "
                                     "the model that is kept")
        f.addRow("Held back for validation:", self.holdout_spin)
        v.addLayout(f)
        self.holdout_note = QtWidgets.QLabel()
        self.holdout_note.setWordWrap(True)
        self.holdout_note.setStyleSheet("color: #555")
        v.addWidget(self.holdout_note)
        self.holdout_spin.valueChanged.connect(self._update_note)
        self.real_list.itemChanged.connect(self._update_note)
        self._update_enabled()

    def _add_row(self, i: int, d: dict) -> None:
        ann = d.get("annotations")
        n = len(ann) if ann is not None else 0
        n_user = int(ann.confirmed_mask().sum()) if ann is not None and n else 0
        item = QtWidgets.QListWidgetItem(f"{d.get('name', 'image')}: {n} atoms, {n_user} corrected or "
                                         "confirmed by you")
        item.setData(QtCore.Qt.UserRole, i)
        item.setFlags(item.flags() | QtCore.Qt.ItemIsUserCheckable)
        item.setCheckState(QtCore.Qt.Checked if n else QtCore.Qt.Unchecked)
        if not n:
            item.setFlags(item.flags() & ~QtCore.Qt.ItemIsEnabled)
        self.real_list.addItem(item)

    def _update_enabled(self) -> None:
        has = bool(self.real_list.count())
        self.none_label.setVisible(not has)
        for w in (self.real_list, self.real_slider, self.holdout_spin):
            w.setEnabled(has)
        self._update_note()

    def held_back_confirmed(self) -> tuple[int, int]:
        """(N, M): the atoms you corrected or confirmed in the held-back strips of the checked
        images, and the number of images holding them (what the F1 on your atoms is measured on)."""
        frac = self.holdout_spin.value() / 100.0
        n = m = 0
        for r in range(self.real_list.count()):
            it = self.real_list.item(r)
            ann = self.items[it.data(QtCore.Qt.UserRole)].get("annotations")
            if it.checkState() != QtCore.Qt.Checked or ann is None or not len(ann):
                continue
            h = ann.shape[0] if ann.shape is not None else int(np.ceil(ann.y.max() + 1))
            y0 = holdout_row(h, frac)
            k = int((ann.confirmed_mask() & (ann.y >= y0 - 0.5)).sum())
            n, m = n + k, m + (k > 0)
        return n, m

    def _update_note(self, *_args) -> None:
        if not self.real_list.count():
            self.holdout_note.setText("")
            return
        if self.holdout_spin.value() == 0:
            self.holdout_note.setText("Nothing held back: your atoms are scored on the images trained on.")
            return
        n, m = self.held_back_confirmed()
        self.holdout_note.setText(
            f"The held-back strips hold {n} atoms you corrected or confirmed ({m} image{'s' if m != 1 else ''}): "
            "the F1 on your atoms is measured on them." if n else
            "None of the atoms in the held-back strips was corrected or confirmed by you: there will be no "
            "before/after on your atoms, and the model is chosen on simulations.")

    def _ask_pairs(self) -> None:
        paths, _ = QtWidgets.QFileDialog.getOpenFileNames(self, "Add exported training data", "",
                                                          "AtomLens training data (*.annotations.json)")
        if paths:
            errors = self.add_pairs(paths)
            if errors:
                QtWidgets.QMessageBox.warning(self, "Training data not added", "\n\n".join(errors))

    def add_pairs(self, paths) -> list[str]:
        """Add training pairs written by :func:`~atomlens.analysis.training_labels.export_training_pair`
        (the ``.annotations.json`` files; the ``.image.npy`` beside each is read with it).
        Returns the error messages of the files that could not be added."""
        from pathlib import Path

        from ..workflows.finetune import AnnotatedImage

        errors = []
        known = {(d["annotations"].image_sha256, d["annotations"].frame) for d in self.items
                 if d.get("annotations") is not None and d["annotations"].image_sha256}
        for p in paths:
            p = Path(p)
            stem = p.name[:-len(".annotations.json")] if p.name.endswith(".annotations.json") else p.stem
            try:
                item = AnnotatedImage.from_files(p.with_name(stem + ".image.npy"), p)
            except (ValueError, OSError) as exc:
                errors.append(f"{p.name}: {exc}")
                continue
            key = (item.ann.image_sha256, item.ann.frame)
            if item.ann.image_sha256 and key in known:
                errors.append(f"{p.name}: this image is already in the list")
                continue
            known.add(key)
            d = {"name": item.name, "image": item.image, "annotations": item.ann, "px_size_nm": item.px_size_nm,
                 "item": item}
            self.items.append(d)
            self._add_row(len(self.items) - 1, d)
        self._update_enabled()
        return errors

    def annotated_images(self) -> list:
        """AnnotatedImage objects for the checked images (ValueError naming a bad one)."""
        items = self.items
        out = []
        for r in range(self.real_list.count()):
            it = self.real_list.item(r)
            if it.checkState() != QtCore.Qt.Checked:
                continue
            d = items[it.data(QtCore.Qt.UserRole)]
            from ..workflows.finetune import AnnotatedImage

            if d.get("item") is not None:
                out.append(d["item"])
                continue
            try:
                out.append(AnnotatedImage(d["image"], d["annotations"], d.get("px_size_nm"),
                                          name=str(d.get("name") or "")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"the annotated image {d.get('name', r + 1)!r} cannot be used: {exc}") from None
        return out
