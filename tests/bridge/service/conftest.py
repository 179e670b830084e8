"""Service tests: the bridge as a long-running daemon (systemd, faults, floods, fuzz).

This folder's helper modules (``service_helpers``, ``fuzzgen``) are imported by name; bench/ uses them too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
