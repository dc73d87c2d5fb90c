"""The headless workflow layer: what the command line and the GUI both do, above the analysis
(pure numpy) and the networks (torch).

* :mod:`~atomlens.workflows.models`: which model for an imaging mode (one rule), the loaded
  models kept between images, and the fall-back to the CPU when the GPU fails;
* :mod:`~atomlens.workflows.analyse`: a file to a Micrograph, and one frame of it to a result
  with the user's settings (:class:`~atomlens.workflows.analyse.AnalysisSettings`);
* :mod:`~atomlens.workflows.batch`: the one loop over files that ``atomlens detect``,
  ``atomlens batch`` and the Process-folder dialog run;
* :mod:`~atomlens.workflows.export`: every file written from a result (CSV, JSON, defect maps,
  HyperSpy) and their JSON encoding.

``cli.py`` and ``gui/`` call this layer; it never imports them (see ``docs/ARCHITECTURE.md``).
"""
