"""`configs/<name>.py`: one `get_config()` each, built on `configs/common.py`.

Importable as `configs.<name>` from the repository root (the Flax examples' layout).
"""
