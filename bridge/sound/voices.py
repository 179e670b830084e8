"""A vectorised bank of sine voices: phase-continuous, click-free, no per-sample Python.

Every voice is a sinusoid with a frequency, a gain and a stereo position.
Parameter changes take effect at the start of the next rendered block and are
*ramped* over that block (``block`` samples, 256 at 48 kHz ≈ 5 ms):

- a gain change is a linear gain ramp;
- a frequency change is an equal-phase crossfade: the old partial fades out
  while the new one fades in, with the new phase chosen so that both agree at
  the middle of the ramp. For the small steps of a slowly moving value this is
  indistinguishable from a glide; for big jumps it is a 5 ms legato. Either way
  the waveform and its envelope stay continuous: no clicks.

Rendering is separable, so its cost is a matrix product instead of one
``sin`` per voice and sample: with ``n = k·L + l``,
``sin(ω n + φ) = sin(ω L k + φ)·cos(ω l) + cos(ω L k + φ)·sin(ω l)``, hence
the sum over voices of a block of ``K·L`` samples is one ``(K × 2P) @ (2P × 2L)``
product (``P`` partials, two channels), with only ``(K + L)·P`` trig calls.
Phases are kept in float64 (wrapped to ``[0, 2π)``); the products run in float32.

Also here: one-shot samples (alarm, activation-spectrum sounds) mixed in at a
sample position, a master gain (ramped like the voices) and a soft limiter.

>>> bank = VoiceBank(48_000, block=256)
>>> v = bank.add_voice(pan=0.0)
>>> bank.set(v, freq=1000.0, gain=0.5)
>>> x = bank.render(188)          # ≈ 1 s
>>> x.shape, x.dtype
((48128, 2), dtype('float32'))
>>> bool(np.isfinite(x).all()), round(float(np.abs(x).max()), 2)
(True, 0.35)
"""

from __future__ import annotations

import math

import numpy as np

from .alarms import duck_envelope
from .maps import pan_gains, soft_limit
from .resample import PASS_FRACTION, Upsampler, decimation_for
from .tuning import limit_blas_threads, tune_allocator

TWO_PI = 2.0 * math.pi
#: Frequencies are kept below this fraction of the sample rate (no aliasing).
MAX_FREQ_FRACTION = 0.45
#: Ducking fades the voices down and up over this many samples (10 ms at 48 kHz): no clicks.
DUCK_RAMP = 480


#: A scheduled change: ``(block, ω targets, gain targets, master)``.
Snapshot = tuple[int, np.ndarray, np.ndarray, float]


def _wrap(x: np.ndarray) -> np.ndarray:
    """Angles to ``[0, 2π)``, in place (``floor`` is many times faster than ``np.remainder`` here)."""
    x *= 1.0 / TWO_PI
    x -= np.floor(x)
    x *= TWO_PI
    return x


def _trig32(arg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sin, cos`` of float64 angles (wrapped in place first), computed in float32."""
    a = _wrap(arg).astype(np.float32)
    return np.sin(a), np.cos(a)


class VoiceBank:
    """Sine voices plus one-shot samples, rendered block by block into stereo float32.

    Changes can be *scheduled*: :meth:`schedule` moves a cursor to a later block
    and every following :meth:`set` / :meth:`play` lands there. One
    :meth:`render` call then renders any number of change intervals in a few
    array operations (offline: a second of audio with twenty changes per voice
    costs about what one change costs). Without :meth:`schedule`, changes land at
    the next rendered block, as they always did.

    ``max_freq`` (Hz): the highest voice frequency the caller will ask for. When
    it is well below the sample rate (the continuous preset's 3.52 kHz at 48 kHz)
    the voices are synthesised at ``sr / decimation`` (12 kHz) and upsampled once
    for the mix by a streaming polyphase FIR (``Upsampler``): the cost of the
    voices drops by the factor, the upsampler costs per output sample, not per
    voice. One-shots (alarm noise, spectra) are mixed at the full rate.
    """

    def __init__(self, sample_rate: int, block: int = 256, capacity: int = 16,
                 max_freq: float | None = None) -> None:
        if block % 16:
            raise ValueError(f"block must be a multiple of 16, got {block}")
        self.sr = int(sample_rate)
        self.block = int(block)
        self.decimation = 1 if max_freq is None else decimation_for(self.sr, self.block, max_freq)
        self.rate = self.sr / self.decimation
        """Internal (voice) sample rate."""
        self._lb = self.block // self.decimation
        self._row = 16
        self.max_freq = MAX_FREQ_FRACTION * self.sr if self.decimation == 1 else PASS_FRACTION * self.rate
        self._up = Upsampler(self.decimation) if self.decimation > 1 else None
        self._shot_delay = self._up.delay if self._up is not None else 0
        self.n = 0
        self._omega = np.zeros(capacity)  # rendered state; rad per internal sample
        self._phase = np.zeros(capacity)
        self._gain = np.zeros(capacity)
        self._t_omega = np.zeros(capacity)  # targets at the cursor
        self._t_gain = np.zeros(capacity)
        self._pan = np.zeros((capacity, 2))
        self.master = 1.0
        self._t_master = 1.0
        self.position = 0
        """Samples rendered so far."""
        self._cursor = 0
        self._dirty = False
        self._sched: list[Snapshot] = []
        self._shots: list[tuple[int, np.ndarray]] = []
        self._ducks: list[tuple[int, int]] = []
        limit_blas_threads()
        tune_allocator()

    # -- voices ------------------------------------------------------------
    def add_voice(self, pan: float = 0.0) -> int:
        """A new silent voice; returns its index."""
        if self.n == len(self._omega):
            grow = len(self._omega)
            for name in ("_omega", "_phase", "_gain", "_t_omega", "_t_gain"):
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(grow)]))
            self._pan = np.concatenate([self._pan, np.zeros((grow, 2))])
        i = self.n
        self._pan[i] = pan_gains(pan)
        self.n += 1
        return i

    def set(self, voice: int, *, freq: float | None = None, gain: float | None = None) -> None:
        """New targets for a voice; they are reached by a ramp over the block at the cursor."""
        self._dirty = True
        if freq is not None:
            self._t_omega[voice] = TWO_PI * min(max(freq, 1.0), self.max_freq) / self.rate
        if gain is not None:
            self._t_gain[voice] = max(0.0, gain)

    def set_many(self, voices: np.ndarray, freqs: np.ndarray, gains: np.ndarray) -> None:
        """:meth:`set` for many voices at once (the last of a repeated voice wins; a NaN frequency keeps
        the voice's pitch)."""
        self._dirty = True
        w = np.clip(freqs, 1.0, self.max_freq) * (TWO_PI / self.rate)
        keep = np.isnan(w)
        if keep.any():
            w[keep] = self._t_omega[voices[keep]]
        self._t_omega[voices] = w
        self._t_gain[voices] = np.maximum(gains, 0.0)

    def set_master(self, gain: float) -> None:
        self._dirty = True
        self._t_master = gain

    def freq(self, voice: int) -> float:
        """The voice's target frequency in Hz."""
        return float(self._t_omega[voice] * self.rate / TWO_PI)

    def gain(self, voice: int) -> float:
        return float(self._t_gain[voice])

    @property
    def cursor(self) -> int:
        """The block at which changes land now."""
        return max(self._cursor, self.position // self.block)

    @property
    def now(self) -> int:
        """The sample at which changes land now (the cursor's block start)."""
        return self.cursor * self.block

    def schedule(self, block: int) -> None:
        """Land the following changes at ``block`` (absolute; never before the cursor)."""
        cur = self.cursor
        if block <= cur:
            return
        if self._dirty:
            self._sched.append((cur, self._t_omega[: self.n].copy(), self._t_gain[: self.n].copy(), self._t_master))
            self._dirty = False
        self._cursor = int(block)

    @property
    def pending_blocks(self) -> int:
        """Blocks from the render position to the cursor (scheduled but not rendered)."""
        return self.cursor - self.position // self.block

    def play(self, samples: np.ndarray, at: int | None = None) -> None:
        """Mix a one-shot ``(n, 2)`` (or mono) float sample in from sample ``at`` (default: the cursor)."""
        x = np.asarray(samples, np.float32)
        if x.ndim == 1:
            x = np.repeat(x[:, None], 2, axis=1) * np.float32(math.sqrt(0.5))
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        at = self.now if at is None else max(int(at), self.position)
        self._shots.append((at + self._shot_delay, x))

    def duck(self, samples: int, at: int | None = None) -> None:
        """Turn the voices (not the one-shots) down for ``samples`` from ``at`` (default: the cursor): an alarm's
        earcon and speech are never masked by them."""
        at = (self.now if at is None else max(int(at), self.position)) + self._shot_delay
        self._ducks.append((at, at + int(samples)))

    def silence(self) -> None:
        """Fade every voice out over the block at the cursor."""
        self._dirty = True
        self._t_gain[: self.n] = 0.0

    @property
    def active(self) -> int:
        return int(np.count_nonzero(self._t_gain[: self.n]))

    # -- rendering ---------------------------------------------------------
    def render(self, blocks: int) -> np.ndarray:
        """The next ``blocks`` blocks as ``(blocks·block, 2)`` float32 in -1..1."""
        size = self.block
        total = blocks * size
        if blocks <= 0:
            return np.zeros((0, 2), np.float32)
        start = self.position // size
        segs, ramp0 = self._segments(start, start + blocks)
        m_prev = self.master
        low = self._render_voices(segs, ramp0, start, blocks)
        out = self._up(low) if self._up is not None else low
        if self._ducks:
            lo, hi = self.position, self.position + total
            spans = [d for d in self._ducks if d[0] - DUCK_RAMP < hi and d[1] + DUCK_RAMP > lo]
            if spans:
                out *= duck_envelope(total, lo, spans, ramp=DUCK_RAMP)[:, None]
            self._ducks = [d for d in self._ducks if d[1] + DUCK_RAMP > hi]
        if self._shots:
            self._mix_shots(out, segs, start, blocks, m_prev)
        soft_limit(out)
        self.position += total
        return out

    def _segments(self, start: int, end: int) -> tuple[list[Snapshot], bool]:
        """The target snapshots in effect in blocks ``start..end`` (the first at ``start``); and whether
        the first one is a change (ramped) rather than the current state going on."""
        if self._dirty and self.cursor < end:
            self._sched.append((self.cursor, self._t_omega[: self.n].copy(), self._t_gain[: self.n].copy(),
                                self._t_master))
            self._dirty = False
        i = 0
        while i < len(self._sched) and self._sched[i][0] < end:
            i += 1
        segs, self._sched = self._sched[:i], self._sched[i:]
        if segs and segs[0][0] == start:
            return segs, True
        return [(start, self._omega[: self.n].copy(), self._gain[: self.n].copy(), self.master), *segs], False

    def _render_voices(self, segs: list[Snapshot], ramp0: bool, start: int, blocks: int) -> np.ndarray:
        """The voices over ``blocks`` blocks at the internal rate, ``(blocks·lb, 2)`` float32.

        Each interval of constant targets is one steady sum of sines, rendered by
        the separable product (rows of ``row`` samples). It is rendered one block
        past its end too: the block where the next interval starts is the linear
        crossfade of the two (old fading out, new fading in), which is exactly the
        gain ramp for a voice that keeps its pitch and the equal-phase crossfade for
        one that moves.
        """
        n, lb, row = self.n, self._lb, self._row
        q = lb // row  # rows per block
        if n == 0:
            self.master = segs[-1][3]
            return np.zeros((blocks * lb, 2), np.float32)
        s_cnt = len(segs)
        w1 = np.zeros((s_cnt, n))
        g1 = np.zeros((s_cnt, n))
        for i, (_, w, g, _m) in enumerate(segs):
            w1[i, : len(w)] = w
            g1[i, : len(g)] = g
        masters = np.array([m for *_, m in segs])
        first = np.array([b for b, *_ in segs]) - start
        nblk = np.diff(np.append(first, blocks))
        w_prev, g_prev, ph_prev = self._omega[:n].copy(), self._gain[:n] * self.master, self._phase[:n].copy()
        self._gain[:n] = g1[-1]
        self.master = float(masters[-1])
        g1 *= masters[:, None]
        # Phases: an interval starts where the previous one left off, shifted so old and new partials agree
        # at the middle of the crossfade block; a voice that was silent just jumps (no shift).
        w0 = np.concatenate([w_prev[None], w1[:-1]])
        g0 = np.concatenate([g_prev[None], g1[:-1]])
        off = np.where((w0 != w1) & (g0 > 0.0), (w0 - w1) * (lb / 2), 0.0)
        inc = off + w1 * (nblk * lb)[:, None]
        phi = np.empty((s_cnt, n))
        phi[0] = ph_prev
        np.cumsum(inc[:-1], axis=0, out=phi[1:])
        phi[1:] += ph_prev
        phi += off
        self._phase[:n] = _wrap(ph_prev + inc.sum(axis=0))
        self._omega[:n] = w1[-1]
        # The steady pieces, in order: [the state, one block, if the span starts with a change], then every
        # interval, each one block longer except the last.
        ext = np.ones(s_cnt, np.intp)
        ext[-1] = 0
        ys_blocks = nblk + ext
        if ramp0:
            ys_phase, ys_w, ys_g = (np.concatenate([a[None], b]) for a, b in ((ph_prev, phi), (w_prev, w1),
                                                                             (g_prev, g1)))
            ys_blocks = np.concatenate([[1], ys_blocks])
        else:
            ys_phase, ys_w, ys_g = phi, w1, g1
        y_total = int(ys_blocks.sum())
        ys = np.zeros((y_total * q, 2 * row), np.float32)
        live = (ys_g > 0.0).any(axis=0)
        if live.any():
            if not live.all():
                ys_phase, ys_w, ys_g = ys_phase[:, live], ys_w[:, live], ys_g[:, live]
            self._steady(ys, ys_phase, ys_w, ys_g, ys_blocks * q, self._pan[:n][live])
        yb = ys.reshape(y_total, q, 2 * row)
        ramps = (np.cumsum(ys_blocks) - ys_blocks)[1:]  # every piece but the first starts with a crossfade
        if len(ramps):
            fade = self._fade()
            yb[ramps] = yb[ramps] * fade + yb[ramps - 1] * (1.0 - fade)
            yb = np.delete(yb, ramps - 1, axis=0)
        return yb.reshape(blocks * q, 2, row).transpose(0, 2, 1).reshape(blocks * lb, 2)

    def _fade(self) -> np.ndarray:
        """``n / lb`` for the samples of a block in the row layout ``(q, channel·row)``."""
        lb, row = self._lb, self._row
        idx = np.arange(lb // row)[:, None] * row + np.tile(np.arange(row), 2)[None, :]
        return (idx / lb).astype(np.float32)

    def _steady(self, out: np.ndarray, phase: np.ndarray, w: np.ndarray, g: np.ndarray, rows: np.ndarray,
                pan: np.ndarray) -> None:
        """Steady sums of sines into ``out`` (row layout): piece ``i`` has ``rows[i]`` rows, start phases
        ``phase[i]``, frequencies ``w[i]``, gains ``g[i]``; one matrix product per piece, trig all at once."""
        row = self._row
        p = pan.shape[0]
        j = np.arange(row, dtype=np.float64)
        s_, c_ = _trig32(np.multiply.outer(w, j))  # (pieces, P, row)
        pan32 = pan.astype(np.float32)[None, :, :, None]
        right = np.empty((len(w), 2 * p, 2, row), np.float32)  # columns (channel, j)
        np.multiply(c_[:, :, None, :], pan32, out=right[:, :p])
        np.multiply(s_[:, :, None, :], pan32, out=right[:, p:])
        right = right.reshape(len(w), 2 * p, 2 * row)
        total = int(rows.sum())
        piece = np.repeat(np.arange(len(w)), rows)
        r_idx = np.arange(total) - np.repeat(np.cumsum(rows) - rows, rows)
        arg = phase[piece]
        arg += w[piece] * (row * r_idx.astype(np.float64))[:, None]
        s_, c_ = _trig32(arg)
        gp = g[piece].astype(np.float32)
        left = np.empty((total, 2 * p), np.float32)
        np.multiply(gp, s_, out=left[:, :p])
        np.multiply(gp, c_, out=left[:, p:])
        k = 0
        for i, c in enumerate(rows.tolist()):
            np.matmul(left[k:k + c], right[i], out=out[k:k + c])
            k += c

    def _mix_shots(self, out: np.ndarray, segs: list[Snapshot], start: int,
                   blocks: int, m_prev: float) -> None:
        lo_pos, hi_pos = self.position, self.position + len(out)
        keep: list[tuple[int, np.ndarray]] = []
        mix = np.zeros_like(out)
        hit = False
        for at, x in self._shots:
            lo, hi = max(at, lo_pos), min(at + len(x), hi_pos)
            if hi > lo:
                mix[lo - lo_pos:hi - lo_pos] += x[lo - at:hi - at]
                hit = True
            if at + len(x) > hi_pos:
                keep.append((at, x))
        self._shots = keep
        if hit:
            out += mix * self._master_env(segs, start, blocks, m_prev)[:, None]

    def _master_env(self, segs: list[Snapshot], start: int,
                    blocks: int, m_prev: float) -> np.ndarray:
        """The master gain per output sample over the span (ramped at each change, like the voices)."""
        size = self.block
        first = np.array([b for b, *_ in segs]) - start
        m1 = np.array([m for *_, m in segs], np.float32)
        m0 = np.concatenate([np.array([m_prev], np.float32), m1[:-1]])
        per = np.repeat(m1, np.diff(np.append(first, blocks)))
        env = np.repeat(per[:, None], size, axis=1)
        ramp = np.arange(size, dtype=np.float32) / size
        env[first] = m0[:, None] + (m1 - m0)[:, None] * ramp
        return env.reshape(-1)
