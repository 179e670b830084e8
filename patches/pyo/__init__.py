"""The pyo patch set; ``base.Patch`` is the interface (see docs/patches.md)."""
