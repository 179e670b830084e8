// The page's WebAudio engine: the bridge's sine renderer in the browser (bridge/outputs/sine_voices.py).
// One sine oscillator per voice at the pitch the bridge computed (fmin·2^(octaves·norm), sent as `hz`),
// its level from its rule (note rules gain·velocity/127, CC rules cc_gain), master 1/√voices, each run
// on its stereo spot (run_pan), pitch changes glided over one renderer block (256 samples ≈ 5.3 ms),
// and the NaN alarm's earcon: three 60 ms bursts of 1.5–5 kHz noise, 100 ms apart (bridge/sound/alarms.py).
"use strict";

const GLIDE_S = 256 / 48000;
const ALARM = { lo: 1500, hi: 5000, bursts: 3, burst: 0.06, period: 0.1, amplitude: 0.3 };

class SoundEngine {
  constructor() {
    this.ctx = null;
    this.voices = new Map();   // voice id → {osc, gain, run, group, level, audible}
    this.runs = new Map();     // run → StereoPannerNode
    this.volume = 0.6;
  }

  get running() { return this.ctx !== null && this.ctx.state === "running"; }

  async start() {
    if (this.ctx === null) {
      const ctx = new AudioContext({ latencyHint: "interactive" });
      this.master = ctx.createGain();
      this.master.gain.value = this.volume;
      // A limiter in place of the renderer's soft_limit: many voices must not clip.
      this.limiter = ctx.createDynamicsCompressor();
      this.limiter.threshold.value = -3; this.limiter.knee.value = 3; this.limiter.ratio.value = 20;
      this.analyser = ctx.createAnalyser();
      this.analyser.fftSize = 2048;
      this.master.connect(this.limiter).connect(this.analyser).connect(ctx.destination);
      this.noise = this.makeNoise(ctx);
      this.ctx = ctx;
    }
    await this.ctx.resume();
  }

  async stop() {
    if (this.ctx !== null) await this.ctx.suspend();
  }

  setVolume(v) {
    this.volume = v;
    if (this.ctx) this.master.gain.setTargetAtTime(v, this.ctx.currentTime, 0.02);
  }

  makeNoise(ctx) {
    const n = Math.ceil(ctx.sampleRate * ALARM.burst);
    const buf = ctx.createBuffer(1, n, ctx.sampleRate);
    const d = buf.getChannelData(0);
    let seed = 0x7a11;  // deterministic, like the bridge's
    for (let i = 0; i < n; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      d[i] = (seed / 0x3fffffff - 1) * Math.sin(Math.PI * i / (n - 1)) ** 2;  // Hann-shaped burst
    }
    return buf;
  }

  panner(run, pan) {
    let p = this.runs.get(run);
    if (!p) {
      p = this.ctx.createStereoPanner();
      p.pan.value = pan;
      p.connect(this.master);
      this.runs.set(run, p);
    }
    return p;
  }

  // Bring the voices in line with the model: {run, pan, group, id, hz, level, audible}[]
  sync(list) {
    if (!this.ctx) return;
    const now = this.ctx.currentTime;
    const seen = new Set();
    const masterGain = list.length ? 1 / Math.sqrt(list.length) : 1;
    for (const v of list) {
      seen.add(v.id);
      let s = this.voices.get(v.id);
      if (!s) {
        const osc = this.ctx.createOscillator();
        osc.type = "sine";
        osc.frequency.value = v.hz;
        const gain = this.ctx.createGain();
        gain.gain.value = 0;
        osc.connect(gain).connect(this.panner(v.run, v.pan));
        osc.start();
        s = { osc, gain, hz: v.hz, g: -1 };
        this.voices.set(v.id, s);
      }
      if (s.hz !== v.hz) {
        const f = s.osc.frequency;
        f.cancelScheduledValues(now);
        f.setValueAtTime(s.hz, now);
        f.linearRampToValueAtTime(v.hz, now + GLIDE_S);
        s.hz = v.hz;
      }
      const g = v.audible ? v.level * masterGain : 0;
      if (g !== s.g) {
        s.gain.gain.setTargetAtTime(g, now, 0.01);
        s.g = g;
      }
    }
    for (const [id, s] of this.voices) {
      if (!seen.has(id)) {
        s.gain.gain.setTargetAtTime(0, now, 0.01);
        s.osc.stop(now + 0.1);
        this.voices.delete(id);
      }
    }
  }

  alarm(run, pan) {
    if (!this.running) return;
    const t0 = this.ctx.currentTime + 0.01;
    const out = this.panner(run, pan);
    for (let i = 0; i < ALARM.bursts; i++) {
      const src = this.ctx.createBufferSource();
      src.buffer = this.noise;
      const band = this.ctx.createBiquadFilter();
      band.type = "bandpass";
      band.frequency.value = Math.sqrt(ALARM.lo * ALARM.hi);
      band.Q.value = band.frequency.value / (ALARM.hi - ALARM.lo);
      const g = this.ctx.createGain();
      g.gain.value = ALARM.amplitude * 3;  // the band filter takes most of the white noise's power
      src.connect(band).connect(g).connect(out);
      src.start(t0 + i * ALARM.period);
    }
  }

  // RMS of what the page is playing now (read by the tests and shown nowhere else).
  rms() {
    if (!this.ctx) return 0;
    const buf = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const x of buf) s += x * x;
    return Math.sqrt(s / buf.length);
  }
}

// Optional Web MIDI out: each run on its own channel (1…15, skipping 10), each voice's pitch as the
// nearest MIDI note (note rules) or CC 74 from its 0..1 value (CC rules); alarms as note 90 on channel 16.
class MidiOut {
  constructor() { this.access = null; this.port = null; this.notes = new Map(); }

  async open() {
    if (!navigator.requestMIDIAccess) throw new Error("this browser has no Web MIDI");
    this.access = await navigator.requestMIDIAccess();
    return [...this.access.outputs.values()].map(p => ({ id: p.id, name: p.name }));
  }

  choose(id) {
    this.allOff();
    this.port = id && this.access ? this.access.outputs.get(id) || null : null;
  }

  static channel(runIndex) { const c = runIndex % 15; return c >= 9 ? c + 1 : c; }

  voice(runIndex, v) {
    if (!this.port) return;
    const ch = MidiOut.channel(runIndex);
    if (v.target === "note") {
      const note = Math.max(0, Math.min(127, Math.round(69 + 12 * Math.log2(v.hz / 440))));
      const prev = this.notes.get(v.id);
      if (prev && prev[1] === note) return;
      if (prev) this.port.send([0x80 | prev[0], prev[1], 0]);
      if (v.audible) { this.port.send([0x90 | ch, note, 96]); this.notes.set(v.id, [ch, note]); }
      else this.notes.delete(v.id);
    } else {
      this.port.send([0xb0 | ch, 74, Math.round(Math.max(0, Math.min(1, v.norm)) * 127)]);
    }
  }

  alarm() {
    if (!this.port) return;
    this.port.send([0x9f, 90, 127]);
    this.port.send([0x8f, 90, 0], performance.now() + 400);
  }

  allOff() {
    if (!this.port) return;
    for (let ch = 0; ch < 16; ch++) this.port.send([0xb0 | ch, 123, 0]);
    this.notes.clear();
  }
}

window.SoundEngine = SoundEngine;
window.MidiOut = MidiOut;
