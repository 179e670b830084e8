"""trainsound: hear your neural network train.

The training side: one line in a training script sends telemetry over OSC to
the trainsound bridge (``trainsound bridge``). See README.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
