"""AtomLens: find, class and correct atom columns in atomically resolved STEM and STM images.

The package is split in layers (see ``DESIGN.md``): ``io`` reads micrographs, ``gui`` is
the Qt front end and ``cli`` the ``atomlens`` command.  Importing :mod:`atomlens` is cheap:
heavy libraries (HyperSpy, torch, Qt) are imported only by the modules that need them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
