"""Model bundles: a folder with ``weights.safetensors`` and ``card.json`` (DESIGN.md).

Weights load without pickle (safetensors), and their sha256 is checked against the card, so a
damaged or swapped file gives a clear :class:`BundleError` instead of a wrong model.  Bundled
models live in ``resources/models/<name>/``; user-trained ones in the user data directory
(platformdirs), in the same format.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..fileio import atomic_write_bytes, atomic_write_with, sha256_file, user_data_dir

__all__ = ["BundleError", "save_bundle", "load_bundle", "read_card", "list_bundles", "resolve_bundle",
           "user_models_dir", "bundled_models_dir", "sha256_file", "CARD_REQUIRED", "rename_bundle",
           "export_bundle", "import_bundle", "delete_bundle", "is_user_bundle", "write_card", "check_card"]

CARD_REQUIRED = ("name", "version", "task", "architecture", "classes", "px_size_A", "valid_px_size_A",
                 "mode", "normalisation", "weights_sha256")


class BundleError(Exception):
    """A model bundle is missing, incomplete, damaged or incompatible (readable message)."""


TASKS = ("segmentation", "cam")
#: Optional card entries that must be JSON objects when present.
_CARD_DICTS = ("recipe", "training", "validation", "parent", "calibration", "colours", "cam_thresholds",
               "selection")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _card_problems(card) -> list[str]:
    """What is wrong with a card's entries (empty when nothing is): every entry AtomLens reads."""
    if not isinstance(card, dict):
        return [f"card.json holds a {type(card).__name__}, not an object of entries"]
    bad = []
    missing = [k for k in CARD_REQUIRED if k not in card]
    if missing:
        bad.append(f"card.json lacks {', '.join(missing)}")
    for key in ("name", "mode"):
        if key in card and not (isinstance(card[key], str) and card[key].strip()):
            bad.append(f"{key} must be a non-empty text, not {card[key]!r}")
    if "version" in card and not (isinstance(card["version"], str) and card["version"].strip() or _number(card["version"])):
        bad.append(f"version must be a text or a number, not {card['version']!r}")
    if "task" in card and card["task"] not in TASKS:
        bad.append(f"task must be one of {', '.join(TASKS)}, not {card['task']!r}")
    arch = card.get("architecture")
    if "architecture" in card:
        if not (isinstance(arch, dict) and isinstance(arch.get("name"), str)
                and isinstance(arch.get("params", {}), dict)):
            bad.append(f"architecture must be {{\"name\": ..., \"params\": {{...}}}}, not {str(arch)[:80]!r}")
        else:
            for k, v in arch.get("params", {}).items():
                vals = v if isinstance(v, list) else [v]
                if not vals or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in vals):
                    bad.append(f"architecture parameter {k!r} must be a positive whole number (or a list of them), "
                               f"not {v!r}")
    classes = card.get("classes")
    if "classes" in card:
        if not (isinstance(classes, list) and len(classes) >= 2
                and all(isinstance(c, str) and c.strip() for c in classes)):
            bad.append(f"classes must be a list of at least two names, not {str(classes)[:80]!r}")
        elif len(set(classes)) != len(classes):
            bad.append(f"classes has repeated names ({', '.join(classes)})")
    px = card.get("px_size_A")
    if "px_size_A" in card and not (_number(px) and px > 0):
        bad.append(f"px_size_A must be a positive number of Å, not {px!r}")
    rng = card.get("valid_px_size_A")
    if "valid_px_size_A" in card:
        if not (isinstance(rng, list) and len(rng) == 2 and all(_number(x) and x > 0 for x in rng)
                and rng[0] <= rng[1]):
            bad.append(f"valid_px_size_A must be [lowest, highest], two positive numbers of Å, not {rng!r}")
    norm = card.get("normalisation")
    if "normalisation" in card and norm is not None:
        if not isinstance(norm, (str, dict)):
            bad.append(f"normalisation must be a method name or an object, not {norm!r}")
        elif isinstance(norm, dict) and "clip_percentiles" in norm:
            cp = norm["clip_percentiles"]
            if not (isinstance(cp, list) and len(cp) == 2 and all(_number(x) for x in cp) and 0 <= cp[0] < cp[1] <= 100):
                bad.append(f"normalisation clip_percentiles must be [low, high] within 0-100, not {cp!r}")
    sha = card.get("weights_sha256")
    if "weights_sha256" in card and not (isinstance(sha, str) and _SHA256_RE.match(sha)):
        bad.append(f"weights_sha256 must be 64 hexadecimal digits, not {str(sha)[:80]!r}")
    wb = card.get("weights_bytes")
    if "weights_bytes" in card and not (isinstance(wb, int) and not isinstance(wb, bool) and wb > 0):
        bad.append(f"weights_bytes must be a positive whole number, not {wb!r}")
    for key in _CARD_DICTS:
        if card.get(key) is not None and not isinstance(card[key], dict):
            bad.append(f"{key} must be an object, not {str(card[key])[:80]!r}")
    if isinstance(card.get("colours"), dict):
        if not all(isinstance(c, str) for c in card["colours"].values()):
            bad.append("colours must map class names to colour names such as '#50c8ff'")
    if isinstance(card.get("cam_thresholds"), dict):
        if not all(_number(t) and 0 < t < 1 for t in card["cam_thresholds"].values()):
            bad.append("cam_thresholds must be numbers between 0 and 1 (exclusive)")
    if card.get("seed") is not None and not (isinstance(card["seed"], int) and not isinstance(card["seed"], bool)):
        bad.append(f"seed must be a whole number, not {card['seed']!r}")
    if card.get("annotated_images") is not None and not (
            isinstance(card["annotated_images"], list) and all(isinstance(a, dict) for a in card["annotated_images"])):
        bad.append("annotated_images must be a list of objects")
    if not any(m.startswith("normalisation") for m in bad) and "normalisation" in card:
        from .norm import normalisation_spec

        try:
            normalisation_spec(norm)
        except ValueError as exc:
            bad.append(f"{exc} (the model may need a newer AtomLens)")
    return bad


def check_card(card, where) -> dict:
    """`card` if every entry AtomLens reads is present and usable, else BundleError naming
    `where` (the user's file or folder) and each problem.

    Parameters
    ----------
    card : object
        The parsed ``card.json`` (anything: a non-dict is reported too).  Required entries:
        :data:`CARD_REQUIRED`; ``px_size_A`` and ``valid_px_size_A`` in Å/px.
    where : str or Path
        What the messages name.

    Returns
    -------
    dict
        `card` itself, unchanged.

    Raises
    ------
    BundleError
        Listing every problem found, separated by ``"; "``.

    Examples
    --------
    >>> check_card({"name": "x", "task": "detect"}, "card.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    atomlens.nn.bundle.BundleError: card.json: not a usable model card: card.json lacks version, ...not 'detect'
    """
    bad = _card_problems(card)
    if bad:
        raise BundleError(f"{where}: not a usable model card: " + "; ".join(bad))
    return card



def user_models_dir() -> Path:
    """Where user-trained bundles go (created on demand)."""
    return user_data_dir() / "models"


def bundled_models_dir() -> Path | None:
    """The folder of the models shipped with AtomLens (``atomlens/resources/models``), or None
    when the installation has none."""
    from ..samples import resource_path

    try:
        return resource_path("models")
    except FileNotFoundError:
        return None


def save_bundle(model, card: dict, out_dir) -> Path:
    """Write `model`'s weights and `card` (the sha256 is filled in) to `out_dir` atomically.

    Parameters
    ----------
    model : torch.nn.Module
        The network; its ``state_dict`` is saved as CPU tensors in ``weights.safetensors``.
    card : dict
        The card's entries (see :data:`CARD_REQUIRED`); not changed: a copy with
        ``weights_sha256`` and ``weights_bytes`` added is written as ``card.json``.  It is not
        checked here (:func:`load_bundle` checks it).
    out_dir : str or Path
        The bundle folder; created (with its parents) if needed, its files replaced.

    Returns
    -------
    Path
        `out_dir`.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state)
    atomic_write_bytes(out / "weights.safetensors", blob)
    card = dict(card)
    card["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    card["weights_bytes"] = len(blob)
    write_card(out, card)
    return out


def read_card(path, *, label=None) -> dict:
    """The card of the bundle at `path` (a folder), with every entry checked
    (:func:`check_card`).  Messages name `label` (default: `path`).

    Parameters
    ----------
    path : str or Path
        The bundle folder (holding ``card.json``).
    label : str or Path, optional
        What error messages name instead of `path` (e.g. the zip being imported).

    Returns
    -------
    dict
        The card's entries as JSON gives them.

    Raises
    ------
    BundleError
        When there is no ``card.json``, it cannot be read or parsed, or an entry is unusable.
    """
    p = Path(path)
    where = label or p
    if not (p / "card.json").is_file():
        raise BundleError(f"{where}: not a model bundle (no card.json)")
    try:
        card = json.loads((p / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{where}: card.json cannot be read ({exc})") from exc
    return check_card(card, where)


def _check_outputs(model, card, where) -> None:
    """The network takes one-channel images and gives one output per class of the card."""
    import torch

    params = card["architecture"].get("params", {})
    side = min(256, max(32, 2 ** (int(params.get("depth", 3)) + 1)))
    try:
        with torch.inference_mode():
            x = torch.zeros(1, 1, side, side)
            if card["task"] == "cam":
                if not hasattr(model, "cam"):
                    raise BundleError(f"{where}: the card's task is 'cam' but its {card['architecture']['name']} "
                                      "network has no class activation maps")
                n_out = model.cam(x)[0].shape[-1]
            else:
                out = model(x)
                if out.ndim != 4:
                    raise BundleError(f"{where}: the card's task is 'segmentation' but its "
                                      f"{card['architecture']['name']} network gives no maps")
                n_out = out.shape[1]
    except BundleError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise BundleError(f"{where}: the network in the card cannot run on one-channel images "
                          f"({str(exc).splitlines()[0][:200]})") from exc
    if n_out != len(card["classes"]):
        raise BundleError(f"{where}: the card lists {len(card['classes'])} classes but the network gives "
                          f"{n_out} outputs")


def load_bundle(path, device: str = "cpu", *, label=None):
    """(model in eval mode on `device`, card) of the bundle at `path`.

    Raises BundleError when the card or weights are missing, an entry of the card is
    unusable, the weights' sha256 does not match the card (damaged or replaced file), they
    do not fit the architecture, or the network's outputs do not match the card's classes.
    Messages name `label` (default: `path`).

    Parameters
    ----------
    path : str or Path
        The bundle folder (not a model name: see :func:`resolve_bundle`).
    device : str or torch.device
        Where the model is moved (``"cpu"``, ``"cuda"``...).
    label : str or Path, optional
        What error messages name instead of `path`.

    Returns
    -------
    model : torch.nn.Module
        A :class:`~atomlens.nn.models.UNet` or :class:`~atomlens.nn.models.GapCNN` with the
        bundle's weights, in eval mode, on `device`.
    card : dict
        The checked card.

    Raises
    ------
    BundleError
        As above.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    from .models import build_model

    p = Path(path)
    where = label or p
    card = read_card(p, label=label)
    wfile = p / "weights.safetensors"
    if not wfile.is_file():
        raise BundleError(f"{where}: weights.safetensors is missing")
    blob = wfile.read_bytes()
    if "weights_bytes" in card and len(blob) != card["weights_bytes"]:
        raise BundleError(f"{where}: weights.safetensors holds {len(blob)} bytes, the card says "
                          f"{card['weights_bytes']} (damaged or replaced file)")
    if hashlib.sha256(blob).hexdigest() != card["weights_sha256"]:
        raise BundleError(f"{where}: weights.safetensors is damaged or was replaced (sha256 does not match the card)")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{where}: weights.safetensors cannot be read ({exc})") from exc
    try:
        model = build_model(card["architecture"])
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise BundleError(f"{where}: the weights do not fit the architecture in the card ({str(exc)[:300]})") from exc
    model.eval()
    _check_outputs(model, card, where)
    return model.to(device), card


def list_bundles() -> list[tuple[str, Path, str]]:
    """[(name, path, origin)] of the bundled ('bundled') and user ('user') models."""
    out = []
    for origin, base in (("bundled", bundled_models_dir()), ("user", user_models_dir())):
        if base is None or not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if not d.name.startswith(".") and (d / "card.json").is_file():  # .import-*: being imported
                out.append((d.name, d, origin))
    return out


def resolve_bundle(name_or_path) -> Path:
    """A bundle folder from a path or a model name (user models shadow bundled ones).

    Parameters
    ----------
    name_or_path : str or Path
        A folder holding ``card.json`` (``~`` is expanded), or the folder name of a bundled or
        user model (as :func:`list_bundles` lists them).

    Returns
    -------
    Path
        The bundle folder (its card is not checked here).

    Raises
    ------
    BundleError
        When it is neither, naming the models installed.
    """
    p = Path(str(name_or_path)).expanduser()
    if (p / "card.json").is_file():
        return p
    found = {n: path for n, path, _ in list_bundles()}  # later (user) entries win
    if str(name_or_path) in found:
        return found[str(name_or_path)]
    known = ", ".join(sorted(found)) or "none installed"
    raise BundleError(f"no model {name_or_path!r} (a bundle folder or one of: {known})")


# ---------------------------------------------------------------------- managing user bundles
#: Bundle (folder) names: letters, digits, '.', '_', '-' and spaces; not starting with '.' or ' '.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._ -]{0,79}$")
#: A zip to import may not unpack to more than this (a model bundle is a few MB).
MAX_IMPORT_BYTES = 512 * 1024 * 1024


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not _NAME_RE.match(name) or name.endswith(".") or ".." in name:
        raise BundleError(f"{name!r} is not a usable model name: use up to 80 letters, digits, '.', '_', '-' "
                          "or spaces, starting with a letter, digit or '_'")
    return name


def is_user_bundle(path) -> bool:
    """True when `path` is a bundle folder directly inside :func:`user_models_dir`.

    Parameters
    ----------
    path : str or Path
        A folder (symbolic links are resolved before comparing).

    Returns
    -------
    bool
        False also for bundled models, folders without ``card.json``, and paths that cannot be
        resolved.
    """
    p = Path(path)
    try:
        return p.resolve().parent == user_models_dir().resolve() and (p / "card.json").is_file()
    except OSError:
        return False


def _user_only(path, action: str) -> Path:
    p = Path(path)
    if not (p / "card.json").is_file():
        raise BundleError(f"{p}: not a model bundle (no card.json)")
    if not is_user_bundle(p):
        raise BundleError(f"cannot {action} {p.name}: only models in the user model folder "
                          f"({user_models_dir()}) can be changed; bundled models are read-only")
    return p


def write_card(folder: Path, card: dict) -> None:
    """Write a bundle's card.json atomically.

    Parameters
    ----------
    folder : Path
        The bundle folder (must exist).
    card : dict
        The entries, written as indented JSON (values JSON cannot hold, such as paths, as
        their ``str``); not checked.
    """
    atomic_write_bytes(folder / "card.json", json.dumps(card, indent=1, default=str).encode())


def rename_bundle(path, new_name: str) -> Path:
    """Rename a user bundle: its folder and the card's ``name``; returns the new folder.

    Raises BundleError for bundled models, unusable names and names already taken.

    Parameters
    ----------
    path : str or Path
        A bundle folder directly inside :func:`user_models_dir`.
    new_name : str
        Up to 80 letters, digits, ``.``, ``_``, ``-`` or spaces, starting with a letter, digit
        or ``_`` (surrounding spaces are stripped); not ending in ``.`` nor holding ``..``.

    Returns
    -------
    Path
        The renamed folder (`path` itself when the name does not change).

    Raises
    ------
    BundleError
        As above; if writing the card fails, the folder is renamed back.
    """
    p = _user_only(path, "rename")
    new_name = _check_name(new_name)
    if new_name == p.name:
        return p
    dest = p.parent / new_name
    if dest.exists() or any(n == new_name for n, _, _ in list_bundles()):
        raise BundleError(f"a model named {new_name!r} already exists; choose another name")
    card = read_card(p)
    os.rename(p, dest)
    try:
        write_card(dest, {**card, "name": new_name})
    except BaseException:
        os.rename(dest, p)
        raise
    return dest


def delete_bundle(path) -> None:
    """Delete a user bundle folder (bundled models are refused with a BundleError).

    Parameters
    ----------
    path : str or Path
        A bundle folder directly inside :func:`user_models_dir`; removed with everything in it
        (training logs, resume state).

    Raises
    ------
    BundleError
        When `path` is not a bundle or not a user bundle.
    """
    p = _user_only(path, "delete")
    shutil.rmtree(p)


def _bundle_files(p: Path) -> list[Path]:
    """The regular files at the top of a bundle folder (the resume/ state is left out)."""
    return sorted(f for f in p.iterdir() if f.is_file() and not f.is_symlink() and not f.name.startswith("."))


def _check_weights(p: Path) -> dict:
    card = read_card(p)
    wfile = p / "weights.safetensors"
    if not wfile.is_file():
        raise BundleError(f"{p}: weights.safetensors is missing")
    if sha256_file(wfile) != card["weights_sha256"]:
        raise BundleError(f"{p}: weights.safetensors is damaged or was replaced (sha256 does not match the card)")
    return card


def export_bundle(path, dest, as_zip: bool = True) -> Path:
    """Copy a bundle (bundled or user) for another machine; returns what was written.

    Parameters
    ----------
    path : a bundle folder
    dest : path
        With `as_zip`: a ``.zip`` file to write, or a folder to write ``<name>.zip`` in.
        Without: a folder in which a copy ``<name>/`` is made.
    as_zip : bool
        Write one zip file (default) rather than a copy of the folder.

    The weights are checked against the card first.  The zip holds ``<name>/card.json``,
    ``<name>/weights.safetensors`` and the bundle's other top-level files (training logs),
    and is written atomically.

    Returns
    -------
    Path
        The zip file, or the new ``<dest>/<name>`` folder.

    Raises
    ------
    BundleError
        When the card is unusable, the weights are missing or do not match its sha256, or (for
        a folder copy) ``<dest>/<name>`` already exists.
    """
    p = Path(path)
    _check_weights(p)
    dest = Path(dest)
    if as_zip:
        target = dest if dest.suffix.lower() == ".zip" else dest / f"{p.name}.zip"
        target.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp):
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for f in _bundle_files(p):
                    zf.write(f, f"{p.name}/{f.name}")

        atomic_write_with(target, write)
        return target
    target = dest / p.name
    if target.exists():
        raise BundleError(f"{target} already exists; choose another folder")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=dest))
    try:
        for f in _bundle_files(p):
            shutil.copy2(f, tmp / f.name)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _safe_member(name: str) -> PurePosixPath:
    """The relative path of a zip entry; BundleError for absolute paths and '..'."""
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"refusing the zip: entry {name!r} has an absolute or Windows path")
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        raise BundleError(f"refusing the zip: entry {name!r} points outside the bundle ('..')")
    return PurePosixPath(*[q for q in parts if q not in ("", ".")]) if parts else PurePosixPath()


def _unpack_zip(src: Path, into: Path) -> Path:
    """Unpack the bundle in zip `src` into the empty folder `into`; returns its folder there."""
    try:
        zf = zipfile.ZipFile(src)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{src}: not a readable zip file ({exc})") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        total = 0
        members = []
        for info in infos:
            try:
                rel = _safe_member(info.filename)
            except BundleError as exc:
                raise BundleError(f"{src}: {exc}") from None
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleError(f"{src}: refusing the zip: entry {info.filename!r} is a symbolic link")
            total += info.file_size
            if total > MAX_IMPORT_BYTES:
                raise BundleError(f"{src}: refusing the zip: it unpacks to more than {MAX_IMPORT_BYTES >> 20} MB")
            members.append((info, rel))
        cards = [rel for _, rel in members if rel.name == "card.json"]
        if len(cards) != 1 or len(cards[0].parts) > 2:
            raise BundleError(f"{src}: expected one model bundle (a card.json at the top or in one folder), "
                              f"found {len(cards)} card.json")
        root = cards[0].parent
        for info, rel in members:
            if rel.parent != root:
                continue  # only the bundle's own top-level files
            try:
                with zf.open(info) as fin, open(into / rel.name, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError,
                    RuntimeError, ValueError) as exc:  # lying sizes, bad CRC, unknown compression, encryption
                raise BundleError(f"{src}: the zip is damaged: entry {info.filename!r} cannot be unpacked "
                                  f"({str(exc) or type(exc).__name__})") from exc
            if (into / rel.name).stat().st_size != info.file_size:
                raise BundleError(f"{src}: the zip is damaged: entry {info.filename!r} does not hold the "
                                  f"{info.file_size} bytes it announces")
    return into


def import_bundle(src) -> Path:
    """Install a bundle from a folder or a ``.zip`` (as :func:`export_bundle` writes) into
    :func:`user_models_dir`; returns its new folder.

    The card must be complete and the weights must load and match the card's sha256 (the
    same checks as :func:`load_bundle`); zips with absolute paths, '..' or links in their
    entries are refused.  A name already taken gets "-2", "-3", ... appended (the card's
    ``name`` follows).  Raises BundleError with what is wrong.

    Parameters
    ----------
    src : str or Path
        A bundle folder, or a zip holding one bundle (its ``card.json`` at the top or in one
        folder), unpacking to at most :data:`MAX_IMPORT_BYTES`.

    Returns
    -------
    Path
        The new folder in :func:`user_models_dir`, named after the card's ``name`` (characters
        a name may not hold become ``-``), else the folder's or zip's name.

    Raises
    ------
    BundleError
        As above; nothing is left behind in the user model folder.
    """
    src = Path(src)
    base = user_models_dir()
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".import-", dir=base))
    try:
        if src.is_dir():
            if not (src / "card.json").is_file():
                raise BundleError(f"{src}: not a model bundle (no card.json)")
            for f in _bundle_files(src):
                shutil.copy2(f, work / f.name)
            stem = src.name
        elif src.is_file():
            _unpack_zip(src, work)
            stem = src.stem
        else:
            raise BundleError(f"{src}: no such file or folder")
        load_bundle(work, label=src)  # card usable, sha256 matches, weights fit the architecture
        card = read_card(work, label=src)
        try:
            name = _check_name(card.get("name") or stem)
        except BundleError:
            name = _check_name(re.sub(r"[^A-Za-z0-9._ -]+", "-", str(card.get("name") or stem)).strip("-. ") or "model")
        taken = {n for n, _, _ in list_bundles()}
        final, k = name, 1
        while final in taken or (base / final).exists():
            k += 1
            final = f"{name}-{k}"
        if card.get("name") != final:
            write_card(work, {**card, "name": final})
        os.rename(work, base / final)
        return base / final
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
