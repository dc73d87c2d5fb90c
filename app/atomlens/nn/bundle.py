"""Model bundles: a folder with ``weights.safetensors`` and ``card.json`` (DESIGN.md).

Weights load without pickle (safetensors), and their sha256 is checked against the card, so a
damaged or swapped file gives a clear :class:`BundleError` instead of a wrong model.  Bundled
models live in ``resources/models/<name>/``; user-trained ones in the user data directory
(platformdirs), in the same format.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..fileio import atomic_write_bytes

__all__ = ["BundleError", "save_bundle", "load_bundle", "read_card", "list_bundles", "resolve_bundle",
           "user_models_dir", "bundled_models_dir", "sha256_file", "CARD_REQUIRED"]

CARD_REQUIRED = ("name", "version", "task", "architecture", "classes", "px_size_A", "valid_px_size_A",
                 "mode", "normalisation", "weights_sha256")


class BundleError(Exception):
    """A model bundle is missing, incomplete, damaged or incompatible (readable message)."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def user_models_dir() -> Path:
    """Where user-trained bundles go (created on demand)."""
    from platformdirs import user_data_dir

    base = os.environ.get("ATOMLENS_USER_DATA") or user_data_dir("AtomLens", "AtomLens")
    return Path(base) / "models"


def bundled_models_dir() -> Path | None:
    from ..samples import resource_path

    try:
        return resource_path("models")
    except FileNotFoundError:
        return None


def save_bundle(model, card: dict, out_dir) -> Path:
    """Write `model`'s weights and `card` (the sha256 is filled in) to `out_dir` atomically."""
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state)
    atomic_write_bytes(out / "weights.safetensors", blob)
    card = dict(card)
    card["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    card["weights_bytes"] = len(blob)
    atomic_write_bytes(out / "card.json", json.dumps(card, indent=1, default=str).encode())
    return out


def read_card(path) -> dict:
    """The card of the bundle at `path` (a folder), checked for the required entries."""
    p = Path(path)
    if not (p / "card.json").is_file():
        raise BundleError(f"{p}: not a model bundle (no card.json)")
    try:
        card = json.loads((p / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{p}: card.json cannot be read ({exc})") from exc
    missing = [k for k in CARD_REQUIRED if k not in card]
    if missing:
        raise BundleError(f"{p}: card.json lacks {', '.join(missing)}")
    return card


def load_bundle(path, device: str = "cpu"):
    """(model in eval mode on `device`, card) of the bundle at `path`.

    Raises BundleError when the card or weights are missing, the weights' sha256 does not
    match the card (damaged or replaced file), or they do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    from .models import build_model

    p = Path(path)
    card = read_card(p)
    wfile = p / "weights.safetensors"
    if not wfile.is_file():
        raise BundleError(f"{p}: weights.safetensors is missing")
    blob = wfile.read_bytes()
    if hashlib.sha256(blob).hexdigest() != card["weights_sha256"]:
        raise BundleError(f"{p}: weights.safetensors is damaged or was replaced (sha256 does not match the card)")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{p}: weights.safetensors cannot be read ({exc})") from exc
    try:
        model = build_model(card["architecture"])
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise BundleError(f"{p}: the weights do not fit the architecture in the card ({str(exc)[:300]})") from exc
    return model.to(device).eval(), card


def list_bundles() -> list[tuple[str, Path, str]]:
    """[(name, path, origin)] of the bundled ('bundled') and user ('user') models."""
    out = []
    for origin, base in (("bundled", bundled_models_dir()), ("user", user_models_dir())):
        if base is None or not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if (d / "card.json").is_file():
                out.append((d.name, d, origin))
    return out


def resolve_bundle(name_or_path) -> Path:
    """A bundle folder from a path or a model name (user models shadow bundled ones)."""
    p = Path(str(name_or_path)).expanduser()
    if (p / "card.json").is_file():
        return p
    found = {n: path for n, path, _ in list_bundles()}  # later (user) entries win
    if str(name_or_path) in found:
        return found[str(name_or_path)]
    known = ", ".join(sorted(found)) or "none installed"
    raise BundleError(f"no model {name_or_path!r} (a bundle folder or one of: {known})")
