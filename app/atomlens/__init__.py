"""AtomLens: find, class and correct atom columns in atomically resolved STEM and STM images.

The package is split in layers, each importing only those below it (``docs/ARCHITECTURE.md``
draws them): ``io`` reads micrographs, ``sim`` simulates them, ``analysis`` turns maps into
atoms and results (pure numpy), ``nn`` runs and trains the networks (torch), ``workflows`` is
the headless layer that the ``atomlens`` command (``cli``) and the Qt front end (``gui``) call.
Importing :mod:`atomlens` is cheap: heavy libraries (HyperSpy, torch, Qt) are imported only by
the modules that need them.
"""

from ._version import __version__
__all__ = ["__version__"]
