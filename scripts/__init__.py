"""One-off tools beside the method: the toy reproduction driver, GGUF conversion, benchmarks, the GPU check.

Each runs directly from the repository root, e.g. `python -m scripts.reproduce --help`.
"""
