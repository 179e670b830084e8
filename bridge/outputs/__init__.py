"""Outputs, one module each, imported only when chosen (the protocol they share is in :mod:`.base`).

``REGISTRY`` is a literal name → ``"module:factory"`` table read when an output is built
(uvicorn's style): importing the bridge never imports rtmidi, pyo or PyAudio, and nothing
registers itself at import time. A factory is called as ``Factory(config, **options)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from ..config import Config
from ..errors import OutputUnavailable
from .base import Output

log = logging.getLogger(__name__)

#: output name → "module:factory".
REGISTRY: dict[str, str] = {
    "midi": "trainsound.bridge.outputs.midi:MidiOut",
    "midi_file": "trainsound.bridge.outputs.midifile:MidiFileOut",
    "record": "trainsound.bridge.outputs.record:RecordOut",
    "osc": "trainsound.bridge.outputs.osc:OscOut",
    "sine": "trainsound.bridge.outputs.sine:SineOut",
    "pyo": "trainsound.bridge.outputs.pyo:PyoOut",
}


def load(name: str) -> Any:
    """Import an output's factory by name; a missing library raises :class:`OutputUnavailable`."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise OutputUnavailable(f"unknown output {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    mod, attr = target.split(":")
    try:
        return getattr(import_module(mod), attr)
    except ImportError as err:
        raise OutputUnavailable(f"output {name!r} needs {err.name or err}: {err}") from err


@dataclass(frozen=True)
class OutputSpec:
    """An output to build: registry name and keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    required: bool = False
    """Failing to open it stops the start (files the user asked to keep); otherwise logged and skipped."""


def build_outputs(config: Config, specs: list[OutputSpec]) -> list[Output]:
    """Instantiate outputs; live ones that are unavailable are skipped with one log line."""
    outputs: list[Output] = []
    for spec in specs:
        try:
            outputs.append(load(spec.name)(config, **spec.options))
        except OutputUnavailable as err:
            if spec.required:
                for o in outputs:
                    o.close()
                raise
            log.error("output %s unavailable: %s (going on without it)", spec.name, err)
    return outputs
