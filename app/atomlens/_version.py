"""The version of AtomLens (one place; read by ``atomlens --version``, About and the packaging)."""

__version__ = "0.1.0"
