"""Which arithmetic inference uses: bf16 autocast or fp32 (no torch import, so the GUI can
read the choice at start-up).

bf16 autocast is always used on CUDA.  On the CPU it is used where the CPU has native bf16
dot products (AVX512-BF16 or AMX), unless the user says otherwise: the environment variable
``ATOMLENS_CPU_BF16`` (``on``/``off``/``auto``) or the GUI's Model > CPU arithmetic setting.
Measured with ``bench/accuracy.py`` both ways (README, "CPU arithmetic"), bf16 keeps the
accuracy of fp32 on our test images, so ``auto`` is the default.
"""

from __future__ import annotations

import os

__all__ = ["CPU_BF16_ENV", "cpu_bf16_choice", "cpu_has_fast_bf16", "use_bf16"]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 dot products.

    Returns
    -------
    bool
        True with AVX512-BF16 or AMX (read from ``/proc/cpuinfo``; False where it cannot be
        read); elsewhere bf16 is emulated and slower than fp32 (measured 4x slower on an
        AVX2-only EPYC).
    """
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


#: Environment variable that overrides bf16 on the CPU: ``on`` (``1``, ``true``), ``off``
#: (``0``, ``false``) or ``auto`` (the default: on where :func:`cpu_has_fast_bf16`).  The GUI's
#: Model > CPU arithmetic setting does the same for the app.
CPU_BF16_ENV = "ATOMLENS_CPU_BF16"
_CHOICES = {"on": "on", "1": "on", "true": "on", "yes": "on", "bf16": "on",
            "off": "off", "0": "off", "false": "off", "no": "off", "fp32": "off", "auto": "auto", "": "auto"}


def cpu_bf16_choice(value=None) -> str:
    """The CPU bf16 choice a setting stands for.

    Parameters
    ----------
    value : bool, str or None
        A bool, one of the words ``on``/``1``/``true``/``yes``/``bf16``,
        ``off``/``0``/``false``/``no``/``fp32`` or ``auto`` (any case, surrounding blanks ignored), or None
        for the :data:`CPU_BF16_ENV` environment variable (unset meaning ``auto``).

    Returns
    -------
    str
        ``"on"``, ``"off"`` or ``"auto"``.

    Raises
    ------
    ValueError
        For a word it does not know, naming the source and the accepted words.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    src = "the setting"
    if value is None:
        value, src = os.environ.get(CPU_BF16_ENV, "auto"), CPU_BF16_ENV
    key = str(value).strip().lower()
    if key not in _CHOICES:
        raise ValueError(f"{src}={value!r} is not a CPU bf16 choice; use on, off or auto")
    return _CHOICES[key]


def use_bf16(device: str, cpu_bf16=None) -> bool:
    """Whether inference on `device` runs under bf16 autocast.

    Parameters
    ----------
    device : str
        A torch device name (:func:`atomlens.nn.device.select_device`).
    cpu_bf16 : bool, str or None
        The CPU setting (:func:`cpu_bf16_choice`; None reads the environment).

    Returns
    -------
    bool
        Always True on CUDA; on the CPU as :func:`cpu_bf16_choice` says (``auto``: where
        :func:`cpu_has_fast_bf16`); False on other devices.
    """
    if device == "cuda":
        return True
    if device != "cpu":
        return False
    choice = cpu_bf16_choice(cpu_bf16)
    return choice == "on" or (choice == "auto" and cpu_has_fast_bf16())
