"""The pyo patch set: ``base.Patch`` is the interface (see docs/patches.md), ``host`` the engine process that
plays one (the pyo output spawns it; pyo needs the GIL for every audio block)."""
