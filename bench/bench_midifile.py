"""The MIDI file's periodic save at ~470,000 events: the old whole rebuild (mido) next to the incremental one.

    .venv/bin/python bench/bench_midifile.py [--events 470000] [--batch 2000]

The bridge saves the file every 2 s so that it stays valid after kill -9. Before issue 16 each save
rebuilt every event as a mido message and wrote the file anew (measured here as the baseline, in the
same run); now each track keeps its events encoded (``wire/smf.TrackBytes``) and a save encodes only
the events of the last interval (``--batch``) and writes bytes already made. Figures are the best of 3.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import mido

from trainsound.bridge.wire.smf import TEMPO, TICKS_PER_BEAT, TICKS_PER_SECOND, TrackBytes, smf_bytes

RUNS = ("run0", "run1", "run2", "run3")


def events(n: int) -> dict[str, list[tuple[float, bytes]]]:
    tracks: dict[str, list[tuple[float, bytes]]] = {r: [] for r in RUNS}
    for i in range(n):
        t = i * 0.002
        run = RUNS[i % len(RUNS)]
        msg = bytes([0x90, 36 + i % 60, 100]) if i % 3 == 0 else bytes([0x80, 36 + (i - 1) % 60, 0]) if i % 3 == 1 \
            else bytes([0xB0, 74, i % 128])
        tracks[run].append((t, msg))
    return tracks


def mido_rebuild(tracks: dict[str, list[tuple[float, bytes]]], path: Path) -> None:
    """What MidiFileOut._build + save did before: every event a mido message, every save."""
    mf = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("track_name", name="trainsound", time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=TEMPO, time=0))
    mf.tracks.append(meta)
    for run, evs in tracks.items():
        tr = mido.MidiTrack()
        tr.append(mido.MetaMessage("track_name", name=run, time=0))
        last = 0
        for t, msg in sorted(evs, key=lambda e: e[0]):
            tick = max(0, round(t * TICKS_PER_SECOND))
            tr.append(mido.Message.from_bytes(msg, time=tick - last))
            last = tick
        mf.tracks.append(tr)
    mf.save(str(path))


def best(fn: object, rounds: int = 3) -> float:
    out = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out = min(out, time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=470_000)
    ap.add_argument("--batch", type=int, default=2_000, help="events arriving between two saves")
    a = ap.parse_args()
    tracks = events(a.events)
    with tempfile.TemporaryDirectory() as d:
        old_path, new_path = Path(d) / "old.mid", Path(d) / "new.mid"
        old = best(lambda: mido_rebuild(tracks, old_path), rounds=2)
        enc = {r: TrackBytes(r) for r in RUNS}
        for r, evs in tracks.items():
            enc[r].append(evs[:-a.batch // len(RUNS)], 0.0)
        batch = {r: evs[-a.batch // len(RUNS):] for r, evs in tracks.items()}

        def save() -> None:
            snapshot = {r: TrackBytes(r) for r in RUNS}  # a fresh copy per round, so every round appends
            for r in RUNS:
                snapshot[r].body, snapshot[r].tick = bytearray(enc[r].body), enc[r].tick
            t0 = time.perf_counter()
            for r, evs in batch.items():
                snapshot[r].append(evs, 0.0)
            with open(new_path, "wb") as fh:
                fh.write(smf_bytes(snapshot.values()))
            os.replace(new_path, new_path)
            save.took = min(getattr(save, "took", float("inf")), time.perf_counter() - t0)  # type: ignore[attr-defined]

        for _ in range(3):
            save()
        new = save.took  # type: ignore[attr-defined]
        n_old = sum(1 for t in mido.MidiFile(str(old_path)).tracks for m in t if not m.is_meta)
        n_new = sum(1 for t in mido.MidiFile(str(new_path)).tracks for m in t if not m.is_meta)
        size = new_path.stat().st_size
    print(f"events: {a.events:,} in {len(RUNS)} tracks; file {size / 1e6:.1f} MB; {a.batch} new events per save")
    print(f"whole rebuild with mido (before): {old * 1000:9.1f} ms per save")
    print(f"incremental, encoded bytes (now): {new * 1000:9.1f} ms per save   ({old / new:,.0f}x faster)")
    print(f"both files parse with mido: {n_old:,} and {n_new:,} messages")


if __name__ == "__main__":
    main()
