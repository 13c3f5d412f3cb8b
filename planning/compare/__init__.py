"""Plan comparison for clinical exchange: recalculate an imported plan, compare two doses.

Modules, each with one job:

``resample``      trilinear resampling of a dose cube onto another grid; the common grid of two
``gamma``         3D gamma index (global or local, low-dose threshold) and its typed result
``recalc``        forward dose of an imported RT Ion Plan on its CT (``ionplan recalc``)
``sources``       what a compare side is: an RT Dose file or a plan output folder, loaded
``dose_diff``     dose-difference statistics of two cubes on one grid
``dose_ratio``    RBE-weighted over physical dose (effective RBE) of two cubes on one grid
``dvh_compare``   per-structure DVH curves and metric differences of two doses
``cross_model``   a plan's physical dose under both mMKM and LEM I, side by side
``comparison``    the compare pipeline (``ionplan compare``) and its typed result
``images``        slice images (PNG) and the DVH overlay (SVG) for the report
``html_report``   the self-contained HTML report and report.json of a comparison
"""
