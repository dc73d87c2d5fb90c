"""A tiny untrained segmentation bundle for tests that need a model file, not a good model."""

from __future__ import annotations

TINY_UNET = {"name": "unet", "params": {"base": 4, "depth": 2, "dilations": [1, 2]}}


def tiny_card(**entries) -> dict:
    """The card of :func:`make_tiny_bundle` (4 classes, 0.2 Å/px, HAADF), with `entries` replaced."""
    return {"name": "tiny", "version": "0", "task": "segmentation", "architecture": TINY_UNET,
            "classes": ["background", "atom", "dopant", "vacancy"], "px_size_A": 0.2,
            "valid_px_size_A": [0.05, 0.4], "mode": "HAADF",
            "normalisation": {"method": "clip-zscore", "clip_percentiles": [0.1, 99.9]}, **entries}


def make_tiny_bundle(folder, **entries):
    """Save a seeded tiny U-Net as the bundle `folder`/tiny (card: :func:`tiny_card`)."""
    import torch
    from atomlens.nn.bundle import save_bundle
    from atomlens.nn.models import build_model

    torch.manual_seed(0)
    return save_bundle(build_model(TINY_UNET).eval(), tiny_card(**entries), folder / "tiny")
