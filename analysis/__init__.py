"""The paper's analyses, beside the method: judge calibration, injection robustness, behaviour annotation, plots.

Each runs directly from the repository root, e.g. `python -m analysis.calibrate --help`.
"""
