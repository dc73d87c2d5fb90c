"""Data files shipped with AtomLens (sample images, icons, models).

Installed as the package ``atomlens.resources``; use :mod:`atomlens.resources_path`
(`atomlens.samples`) to reach them rather than paths relative to the source tree.
"""
