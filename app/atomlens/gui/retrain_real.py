"""The "Your corrected images" part of the retrain settings (:mod:`.retrain_settings`): which
annotated images to train on, the share of samples cut from them and the strip held back for
validation.
"""

from __future__ import annotations

from PyQt5 import QtCore, QtWidgets

from .retrain_structure import ispin

__all__ = ["RealImagesGroup"]


class RealImagesGroup(QtWidgets.QGroupBox):
    """A checkable list of the annotated images in `context` (``context["annotated"]``: dicts
    with ``name``, ``image``, ``annotations``, ``px_size_nm``), a share slider and the held-back
    percentage.  Disabled when there are no annotated images."""

    def __init__(self, context: dict, parent=None):
        super().__init__("Your corrected images", parent)
        self.context = context
        v = QtWidgets.QVBoxLayout(self)
        self.real_list = QtWidgets.QListWidget()
        self.real_list.setFixedHeight(72)
        for i, d in enumerate(context.get("annotated") or []):
            ann = d.get("annotations")
            n = len(ann) if ann is not None else 0
            n_user = int(ann.user_mask().sum()) if ann is not None and n else 0
            item = QtWidgets.QListWidgetItem(f"{d.get('name', 'image')}: {n} atoms, {n_user} corrected by you")
            item.setData(QtCore.Qt.UserRole, i)
            item.setFlags(item.flags() | QtCore.Qt.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.Checked if n else QtCore.Qt.Unchecked)
            if not n:
                item.setFlags(item.flags() & ~QtCore.Qt.ItemIsEnabled)
            self.real_list.addItem(item)
        if not self.real_list.count():
            none = QtWidgets.QLabel("None yet: correct the atoms of an image (annotation mode) to train on it.")
            none.setWordWrap(True)
            v.addWidget(none)
        v.addWidget(self.real_list)
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
                                     "your atoms is measured there")
        f.addRow("Held back for validation:", self.holdout_spin)
        v.addLayout(f)
        self.setEnabled(bool(self.real_list.count()))

    def annotated_images(self) -> list:
        """AnnotatedImage objects for the checked images (ValueError naming a bad one)."""
        items = self.context.get("annotated") or []
        out = []
        for r in range(self.real_list.count()):
            it = self.real_list.item(r)
            if it.checkState() != QtCore.Qt.Checked:
                continue
            d = items[it.data(QtCore.Qt.UserRole)]
            from ..nn.realdata import AnnotatedImage

            try:
                out.append(AnnotatedImage(d["image"], d["annotations"], d.get("px_size_nm"),
                                          name=str(d.get("name") or "")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"the annotated image {d.get('name', r + 1)!r} cannot be used: {exc}") from None
        return out
