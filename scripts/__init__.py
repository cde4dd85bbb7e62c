"""One-off tools beside the method: the toy reproduction driver and its report, the judge-quality dial, GGUF
conversion, benchmarks, the GPU check.

Each runs directly from the repository root, e.g. `python -m scripts.reproduce --help`.
"""
