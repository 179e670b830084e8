"""The pyo patch set (see patches/pyo/README or docs)."""
