"""Networks: the FCN atom finder, the GAP-CNN defect classifier, bundles, training, inference.

No Qt here.  torch is imported by the submodules, not by this package, so that
``import atomlens.nn`` stays cheap.
"""
