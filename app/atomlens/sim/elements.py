"""Atomic numbers by element symbol (the elements our structures use, and then some)."""

from __future__ import annotations

_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm "
    "Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U"
).split()

Z_OF = {s: i + 1 for i, s in enumerate(_SYMBOLS)}
SYMBOL_OF = {i + 1: s for i, s in enumerate(_SYMBOLS)}


def atomic_number(symbol_or_z) -> int:
    """Atomic number of an element given by symbol ('Mo') or number (42).

    Parameters
    ----------
    symbol_or_z : str or int
        An element symbol, in any case and with surrounding blanks allowed ('mo', ' Mo'),
        or an atomic number as an int or a string of digits (1 to 92).

    Returns
    -------
    int
        The atomic number.

    Raises
    ------
    ValueError
        For an unknown symbol or a number outside 1..92.

    Examples
    --------
    >>> atomic_number("mo"), atomic_number(42), atomic_number("16")
    (42, 42, 16)
    """
    if isinstance(symbol_or_z, (int,)) or str(symbol_or_z).isdigit():
        z = int(symbol_or_z)
        if z not in SYMBOL_OF:
            raise ValueError(f"no element with Z = {z}")
        return z
    try:
        return Z_OF[str(symbol_or_z).strip().capitalize()]
    except KeyError:
        raise ValueError(f"unknown element {symbol_or_z!r}") from None
