"""Mapping: events → normalised values → MIDI bytes, pure. The engine, its rules, the value scales and
musical scales, voice groups and the MIDI-learn solo. docs/mapping.md.
"""
