"""The output flags that ``bridge``, ``replay`` and ``render`` share, and the outputs they ask for."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .. import config as cfgmod
from ..table import parse_hostport
from ..wire.protocol import DEFAULT_HOST

log = logging.getLogger("trainsound")

#: sclang's default language port: what SuperCollider users evaluate code against (``--osc-out``'s default).
DEFAULT_OSC_OUT_PORT = 57120


def add_output_args(p: argparse.ArgumentParser, *, live_midi_default: bool) -> None:
    g = p.add_argument_group("outputs")
    g.add_argument("--midi-api", choices=cfgmod.MIDI_APIS, help="MIDI API (default from config: auto)")
    if live_midi_default:
        m = g.add_mutually_exclusive_group()
        m.add_argument("--midi-port", metavar="NAME", help="connect to an existing MIDI port (name substring)")
        m.add_argument("--no-midi", action="store_true", help="no live MIDI output")
    else:
        g.add_argument("--midi-port", metavar="NAME", help="play to an existing MIDI port (name substring)")
        g.add_argument("--midi", action="store_true", help="play to a virtual MIDI port 'trainsound:out'")
    g.add_argument("--midi-file", metavar="FILE", help="write a Standard MIDI File")
    g.add_argument(
        "--osc-out", metavar="[HOST:]PORT", help=f"forward mapped values over OSC (default port {DEFAULT_OSC_OUT_PORT})"
    )
    g.add_argument("--wav", metavar="FILE", help="render the internal sine voices to a WAV file")
    g.add_argument("--audio", action="store_true", help="play the internal sine voices on the sound card")
    g.add_argument("--audio-device", metavar="NAME|INDEX", help="sound card for --audio (see 'trainsound devices')")
    g.add_argument("--preset", metavar="NAME",
               help="a named mapping + renderer mode: continuous, everything, perone, timbre, sonnify-loss, "
                   "ab, diff (with --reference)")
    g.add_argument("--pyo-patch", metavar="NAME|FILE", help="play a pyo patch (patches/pyo) on the sound card")
    g.add_argument("--pyo-audio", choices=("jack", "portaudio"), help="pyo's audio driver (default: [pyo] audio)")


def parse_osc_target(text: str) -> tuple[str, int]:
    if text.isdigit():
        return DEFAULT_HOST, int(text)
    if ":" not in text:
        return text, DEFAULT_OSC_OUT_PORT
    return parse_hostport(text, "--osc-out")


def output_specs(
    args: argparse.Namespace, config: cfgmod.Config, *, live_midi_default: bool, never_overwrite: bool = False
) -> list[Any]:
    """The outputs the flags ask for; ``never_overwrite`` (the bridge): existing files get a new name."""
    from . import OutputSpec

    keep = {"never_overwrite": True} if never_overwrite else {}

    specs: list[OutputSpec] = []
    if getattr(args, "record", None):
        specs.append(OutputSpec("record", {"path": args.record, **keep}, required=True))
    want_midi = (not args.no_midi and config.midi.enabled) if live_midi_default else (args.midi or bool(args.midi_port))
    if want_midi:
        specs.append(OutputSpec("midi", {"port": args.midi_port, "api": args.midi_api}))
    if args.midi_file:
        specs.append(OutputSpec("midi_file", {"path": args.midi_file, **keep}, required=True))
    if args.osc_out:
        specs.append(OutputSpec("osc", {"target": parse_osc_target(args.osc_out)}))
    if args.wav or args.audio:
        specs.append(
            OutputSpec(
                "sine",
                {
                    "wav": args.wav,
                    "live": args.audio,
                    "device": args.audio_device,
                    "preset": args.preset or "continuous",
                    **(keep if args.wav else {}),
                },
                required=bool(args.wav) and not args.audio,
            )
        )
    if not args.pyo_patch and "pyo" in config.outputs:
        # The section only configures the output; playing it is the flag's decision (audio is never a surprise).
        log.warning(
            "%s: [pyo] is configured (patch %r) but no pyo output was asked for: add --pyo-patch %s to play it",
            config.source, config.outputs["pyo"].patch, config.outputs["pyo"].patch,
        )
    if args.pyo_patch:
        pyo_opts = {"patch": args.pyo_patch}
        if args.pyo_audio:
            pyo_opts["audio"] = args.pyo_audio
        specs.append(OutputSpec("pyo", pyo_opts))
    return specs


