"""Where and how the networks run: the device, the memory layout and the arithmetic.

Inference (:mod:`atomlens.nn.infer`) and training (:mod:`atomlens.nn.train`) both take their
device from :func:`select_device`, put models and inputs in the layout the device prefers with
:func:`channels_last`, and open :func:`autocast` for the arithmetic :func:`use_bf16` chooses.
The bf16 choice itself lives in :mod:`atomlens.nn.precision` (which does not import torch, so
the GUI can read it at start-up); its public names are re-exported here.
"""

from __future__ import annotations

import torch

from .precision import CPU_BF16_ENV, cpu_bf16_choice, cpu_has_fast_bf16, use_bf16

__all__ = ["CPU_BF16_ENV", "autocast", "channels_last", "cpu_bf16_choice", "cpu_has_fast_bf16",
           "prefers_channels_last", "select_device", "use_bf16"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def select_device(pref: str = "auto") -> str:
    """The torch device to run on.

    Parameters
    ----------
    pref : str
        ``"auto"`` (or empty/None): ``"cuda"`` if a CUDA GPU is available, then Apple
        ``"mps"``, else ``"cpu"``.  Any other name is checked (``"cuda"`` and ``"mps"`` must be
        available) and returned as given, lower-cased.

    Returns
    -------
    str
        The device name, e.g. ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    RuntimeError
        When CUDA or MPS is asked for and is not available.
    """
    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA GPU is available")
    if pref == "mps" and not _mps_available():
        raise RuntimeError("MPS was requested but is not available")
    return pref


def prefers_channels_last(device: str) -> bool:
    """Whether models and inputs on `device` are kept channels-last (NHWC in memory).

    Parameters
    ----------
    device : str
        A name from :func:`select_device`.

    Returns
    -------
    bool
        True on the CPU, where oneDNN's convolutions run faster on channels-last tensors;
        False elsewhere (the default layout is kept).
    """
    return device == "cpu"


def channels_last(obj, device: str):
    """`obj` in the memory layout `device` prefers (:func:`prefers_channels_last`).

    Parameters
    ----------
    obj : torch.nn.Module or torch.Tensor
        A model (converted in place, as :meth:`torch.nn.Module.to` does, and returned) or a
        4D (N, C, H, W) tensor (a channels-last copy is returned unless it already is one).
    device : str
        The device `obj` is on.

    Returns
    -------
    torch.nn.Module or torch.Tensor
        `obj` itself where the device keeps the default layout.
    """
    if not prefers_channels_last(device):
        return obj
    if isinstance(obj, torch.nn.Module):
        return obj.to(memory_format=torch.channels_last)
    return obj.contiguous(memory_format=torch.channels_last)


def autocast(device: str, enabled: bool):
    """A bf16 autocast context for `device` (CUDA's on ``"cuda"``, the CPU's elsewhere).

    Parameters
    ----------
    device : str
        A name from :func:`select_device`.
    enabled : bool
        False gives a context that changes nothing (float32 arithmetic).

    Returns
    -------
    torch.autocast
        The context manager.
    """
    return torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16,
                          enabled=bool(enabled))
