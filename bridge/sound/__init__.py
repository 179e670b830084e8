"""Synthesis below the outputs (it imports no output): the voice bank and its resampler, the pitch map,
the alarm sounds, activation-spectrum audio, the seeds' formulas, WAV files and spectrograms, sound
cards, and the engine child processes (one link for the live sine engine and the pyo engine).
"""
