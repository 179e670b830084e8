"""Session-side patches: pyo patch set and SuperCollider patch."""
