"""The feed and its snapshot, fed by the real mapping engine (no sockets)."""

from __future__ import annotations

import math
import threading
import time

import pytest
from support import wait_until

from trainsound.bridge.config import default, from_dict
from trainsound.bridge.mapping.engine import Engine
from trainsound.bridge.sound.maps import pitch_hz
from trainsound.bridge.web.feed import ALARM_HISTORY, CHANGES, MAX_ADDRESSES, MAX_RUN_ADDRESSES, Feed
from trainsound.bridge.web.snapshot import build
from trainsound.bridge.wire.protocol import parse_event


def feed_one(feed: Feed, engine: Engine, address: str, *args: float | int | str, t: float = 0.0) -> None:
    ev = parse_event(address, tuple(args), t, b"")
    feed.handle(ev, engine.map(ev))


def test_rows_carry_latest_values_and_the_sine_renderers_pitch() -> None:
    cfg = from_dict({"groups": {"mode": "none"}})  # a voice per layer: every address is a row
    feed = Feed(cfg)
    engine = Engine(cfg)
    feed_one(feed, engine, "/nn/r1/step", 12, 1)
    feed_one(feed, engine, "/nn/r1/grad_norm/fc1", 0.5, t=1.0)
    feed_one(feed, engine, "/nn/r1/grad_norm/fc1", 2.0, t=2.0)
    feed_one(feed, engine, "/nn/r1/weight/fc1", 0.0, 0.1, 0.3, 1.0, 1e-3, t=2.0)
    snap = build(feed.copy(), cfg)
    [run] = snap["runs"]
    assert (run["run"], run["step"], run["epoch"], run["pan"]) == ("r1", 12, 1, 0.0)
    rows = {r["id"]: r for r in run["rows"]}
    fc1 = rows["/nn/r1/grad_norm/fc1"]
    assert (fc1["name"], fc1["group"], fc1["value"]) == ("fc1", "grad_norm", 2.0)
    [voice] = fc1["voices"]
    assert voice["target"] == "note" and voice["hz"] == pytest.approx(pitch_hz(voice["norm"]), rel=1e-4)
    assert rows["/nn/r1/weight/fc1"]["values"]["update_ratio"] == 1e-3


def test_a_nan_becomes_an_alarm_with_run_name_kind_and_step() -> None:
    cfg = default()
    feed = Feed(cfg)
    engine = Engine(cfg)
    feed_one(feed, engine, "/nn/r/step", 7)
    feed_one(feed, engine, "/nn/r/grad_norm/conv2", math.nan, t=5.0)
    feed_one(feed, engine, "/nn/r/grad_norm/conv2", math.nan, t=5.1)  # inside the alarm's min_interval: one alarm
    snap = build(feed.copy(), cfg)
    assert snap["alarm_count"] == 1
    [a] = snap["alarms"]
    assert (a["run"], a["name"], a["kind"], a["step"], a["value"]) == ("r", "conv2", "nan", 7, "NaN")
    [row] = snap["runs"][0]["rows"]
    assert row["value"] == "NaN"


def test_detectors_add_alarms_of_their_own_kind() -> None:
    feed = Feed()
    feed.alarm("r", "encoder", "exploding", 1.0, 1e6, step=300)
    assert build(feed.copy(), default())["alarms"][0]["kind"] == "exploding"


def test_the_alarm_history_is_bounded() -> None:
    feed = Feed()
    for i in range(ALARM_HISTORY * 3):
        feed.alarm("r", "x", "nan", float(i), math.nan)
    assert len(feed.copy().alarms) == ALARM_HISTORY and feed.alarm_count == ALARM_HISTORY * 3


def test_prune_forgets_runs_the_pipeline_forgot() -> None:
    cfg = default()
    feed = Feed(cfg)
    engine = Engine(cfg)
    feed_one(feed, engine, "/nn/old/grad_norm/a", 1.0)
    feed_one(feed, engine, "/nn/new/grad_norm/a", 1.0)
    feed.prune({"new"})
    assert [r["run"] for r in build(feed.copy(), cfg)["runs"]] == ["new"]
    assert all(m.run == "new" for m, _ in feed.copy().voices().values())


def test_rate_limited_values_keep_their_row() -> None:
    cfg = from_dict({"mappings": [{"match": "/nn/{run}/loss", "target": "cc", "rate_limit": 1.0}]})
    feed, engine = Feed(cfg), Engine(cfg)
    feed_one(feed, engine, "/nn/r/loss", 1.0, t=0.0)
    feed_one(feed, engine, "/nn/r/loss", 5.0, t=0.1)  # held back by the rate limit
    feed.handle(None, engine.flush_due(2.0))
    [(m, address)] = feed.copy().voices().values()
    assert address == "/nn/r/loss" and m.value == 5.0


def test_a_reader_thread_copies_while_the_receive_thread_writes() -> None:
    cfg = default()
    feed = Feed(cfg)
    engine = Engine(cfg)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                build(feed.copy(), cfg)
            except BaseException as err:  # any error is the failure
                errors.append(err)
                return

    th = threading.Thread(target=reader)
    th.start()
    for i in range(20_000):
        feed_one(feed, engine, f"/nn/r{i % 50}/grad_norm/l{i % 97}", 0.1 + i % 7, t=i * 1e-3)
        if i % 5000 == 0:
            feed.prune({f"r{k}" for k in range(25)})
    stop.set()
    th.join()
    assert errors == []


def test_a_grouped_gpt2_run_shows_its_groups_as_rows() -> None:
    """148 layers of a GPT-2-shaped model: the rows are the voice groups (the engine's own, with their
    latest aggregates), named as the status names them; the layers have no rows of their own."""
    cfg = default()
    feed, engine = Feed(cfg), Engine(cfg)
    layers = [f"transformer.h.{i}.{part}" for i in range(12) for part in
              ("ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight", "mlp.c_fc.weight",
               "mlp.c_proj.weight", "attn.c_attn.bias", "attn.c_proj.bias", "mlp.c_fc.bias", "mlp.c_proj.bias",
               "ln_1.bias", "ln_2.bias")]
    layers = ["transformer.wte.weight", "transformer.wpe.weight", *layers, "transformer.ln_f.weight",
              "transformer.ln_f.bias"]
    assert len(layers) == 148
    for step in range(3):
        feed_one(feed, engine, "/nn/gpt2/step", step, t=step)
        for k, layer in enumerate(layers):
            feed_one(feed, engine, f"/nn/gpt2/grad_norm/{layer}", 0.01 * (k + 1) * (step + 1), t=step + 1e-3 * k)
        feed_one(feed, engine, "/nn/gpt2/loss", 3.0 - step, t=step + 0.5)
    feed.handle(None, engine.flush_due(10.0))
    [run] = build(feed.copy(), cfg)["runs"]
    latest = engine.groups()["gpt2"]["grad_norm_notes"]
    rows = [r for r in run["rows"] if r["kind"] == "grad_norm"]
    assert 2 <= len(rows) <= 14 and len(rows) == len(latest)
    assert [r["group"] for r in rows] == list(latest)  # in the layout's order
    for r in rows:
        assert r["value"] == pytest.approx(latest[r["group"]])
        assert (r["name"], r["rule"]) == ("gradient", "grad_norm_notes")
        [voice] = r["voices"]
        assert voice["rule"] == "grad_norm_notes"
    assert not any(r["id"].startswith("/nn/gpt2/grad_norm/") for r in run["rows"])
    assert [r["id"] for r in run["rows"] if r["kind"] == "loss"] == ["/nn/gpt2/loss"]


def test_a_nan_in_a_grouped_layer_keeps_its_row() -> None:
    cfg = default()
    feed, engine = Feed(cfg), Engine(cfg)
    for i in range(4):
        feed_one(feed, engine, f"/nn/r/grad_norm/h.{i}.mlp", 1.0 + i, t=0.0)
    feed_one(feed, engine, "/nn/r/grad_norm/h.0.mlp", 2.0, t=1.0)
    feed_one(feed, engine, "/nn/r/grad_norm/h.2.mlp", math.nan, t=1.1)
    ids = [r["id"] for r in build(feed.copy(), cfg)["runs"][0]["rows"]]
    assert "/nn/r/grad_norm/h.2.mlp" in ids and "/nn/r/grad_norm/h.0.mlp" not in ids


def test_the_detectors_alarms_reach_the_feed_with_their_kind_name_and_step() -> None:
    """Issue 12's detectors through the real pipeline: every sounded alarm is in the feed as the alarm log
    has it (kind, run, name, step); ticks (epoch, lr) are not alarms."""
    from faults import faulty

    from trainsound.bridge.pipeline import Pipeline
    from trainsound.bridge.replay.alarms import AlarmLog
    from trainsound.bridge.wire.osc import encode_message

    cfg = default()
    feed, log = Feed(cfg), AlarmLog(ticks=True)
    pipe = Pipeline(cfg, [log, feed])
    for i, msgs in enumerate(faulty()):
        for address, args in msgs:
            pipe.feed_message(1000.0 + i * 0.01, encode_message(address, args))
        pipe.tick(1000.0 + i * 0.01)
    pipe.close()
    want = [(a.kind, a.run, a.name, a.step) for a in log.alarms if not a.tick]
    assert len({w[0] for w in want}) >= 6  # spike, plateau, divergence, exploding, vanishing, dead, nan
    snap = build(feed.copy(), cfg)
    assert [(a["kind"], a["run"], a["name"], a["step"]) for a in snap["alarms"]] == want


def test_addresses_are_bounded_per_run_and_in_all_and_shedding_is_counted() -> None:
    cfg = from_dict({"groups": {"mode": "none"}})
    feed = Feed(cfg)
    engine = Engine(cfg)
    for i in range(MAX_RUN_ADDRESSES + 100):
        feed_one(feed, engine, f"/nn/flood/grad_norm/l{i}", 0.5)
    assert len(feed.events) == MAX_RUN_ADDRESSES and feed.shed == 100
    feed_one(feed, engine, "/nn/flood/grad_norm/l0", 0.7)  # a kept address still updates
    assert feed.events["/nn/flood/grad_norm/l0"].values == (0.7,) and feed.shed == 100
    feed_one(feed, engine, "/nn/real/loss", 1.0)  # another run has room of its own
    assert "/nn/real/loss" in feed.events
    runs = [f"r{k}" for k in range(MAX_ADDRESSES // MAX_RUN_ADDRESSES + 1)]
    for run in runs:
        for i in range(MAX_RUN_ADDRESSES):
            feed_one(feed, engine, f"/nn/{run}/grad_norm/l{i}", 0.5)
    assert len(feed.events) == MAX_ADDRESSES and feed.health()["shed"] > 100
    feed.prune({"real"})  # the pipeline forgot the flood: room again
    assert list(feed.per_run) == ["real"] and len(feed.events) == 1
    feed_one(feed, engine, "/nn/next/loss", 1.0)
    assert "/nn/next/loss" in feed.events


@pytest.mark.slow
def test_a_flood_of_addresses_through_the_real_bridge_keeps_the_feed_bounded() -> None:
    """30,000 distinct addresses in 3 runs, with the page served: the feed keeps 4,096 a run and counts the rest
    (before: every address for ever, ~1.5 KB each with a page open)."""
    from support import BridgeProc, free_udp_port
    from webrig import free_tcp_port

    b = BridgeProc(["--no-midi", "--stats-interval", "0", "--web", f"127.0.0.1:{free_tcp_port()}"], free_udp_port())
    try:
        for run in ("a", "b", "c"):
            for i in range(10_000):
                b.send(f"/nn/{run}/grad_norm/layer{i}", 0.5)
                if i % 500 == 499:
                    time.sleep(0.05)  # the bridge maps a new address in ~0.2 ms: keep the kernel buffer from filling
        feed = wait_until(lambda: (f := b.status()["outputs"]["feed"])["addresses"] + f["shed"] >= 29_000 and f,
                          timeout=60, what="the flood mapped")
        assert feed["addresses"] == 3 * MAX_RUN_ADDRESSES, feed
        assert feed["shed"] >= 29_000 - 3 * MAX_RUN_ADDRESSES, feed
    finally:
        b.stop()


def test_the_journal_gives_each_change_once_and_says_when_it_overflowed() -> None:
    cfg = from_dict({"groups": {"mode": "none"}})
    feed, engine = Feed(cfg), Engine(cfg)
    feed_one(feed, engine, "/nn/r/loss", 1.0)
    assert feed.changed() is None  # no journal asked for: the reader takes everything
    feed.journal()
    feed_one(feed, engine, "/nn/r/grad_norm/a", 0.5)
    feed_one(feed, engine, "/nn/r/loss", 0.9)
    assert feed.changed() == ["/nn/r/grad_norm/a", "/nn/r/loss"]
    assert feed.changed() == []
    for i in range(CHANGES + 1):
        feed_one(feed, engine, f"/nn/r{i % 9}/grad_norm/l{i % 300}", 0.5)
    assert len(feed.changes or ()) == CHANGES and feed.dropped == 1  # bounded while the reader stalls
    assert feed.changed() is None  # then every address is news
    feed_one(feed, engine, "/nn/r/loss", 0.8)
    assert feed.changed() == ["/nn/r/loss"]


def test_a_datagram_that_crosses_the_journals_bound_is_kept_whole() -> None:
    cfg = from_dict({"groups": {"mode": "none"}})
    feed, engine = Feed(cfg), Engine(cfg)
    feed.journal()
    for i in range(CHANGES - 1):
        feed_one(feed, engine, f"/nn/r/metric/m{i % 100}", 0.5)
    batch = [(ev, ()) for ev in (parse_event(f"/nn/r/metric/x{k}", (1.0,), 0.0, b"") for k in range(3))]
    feed.handle_batch(batch)  # room for one more when it came: all three are noted, none pushed out
    taken = feed.changed()
    assert taken is not None and len(taken) == CHANGES + 2 and taken[-3:] == ["/nn/r/metric/x0", "/nn/r/metric/x1",
                                                                               "/nn/r/metric/x2"]
    assert feed.dropped == 0


def test_a_reader_taking_changes_while_the_receive_thread_stores_misses_none() -> None:
    """The page's thread takes the journal while datagrams come (known addresses take the pipeline's fast
    path, new ones the full one): each store is taken exactly once."""
    from collections import Counter

    from trainsound.bridge.pipeline import Pipeline
    from trainsound.bridge.wire.osc import encode_bundle, encode_message

    cfg = from_dict({"groups": {"mode": "none"}})
    feed = Feed(cfg)
    feed.journal()
    pipe = Pipeline(cfg, [feed])
    stop = threading.Event()
    taken: list[str | None] = []

    def take() -> None:
        got = feed.changed()
        taken.extend([None] if got is None else [a for a in got if isinstance(a, str)])

    def reader() -> None:
        while not stop.is_set():
            take()
            time.sleep(0.0005)

    th = threading.Thread(target=reader)
    th.start()
    sent: Counter[str] = Counter()
    for step in range(300):  # 15,000 stores: under the journal's bound, so no take may be None
        run = f"r{step % 3}"
        msgs = [(f"/nn/{run}/grad_norm/l{k}", [0.1 + (step + k) % 7]) for k in range(30)]  # mapped, or thinned
        msgs += [(f"/nn/{run}/metric/m{k}", [float(step)]) for k in range(20)]  # no rule maps these
        pipe.feed_datagram(encode_bundle([encode_message(a, v) for a, v in msgs]), 1000.0 + step * 0.01)
        sent.update(a for a, _ in msgs)
    stop.set()
    th.join()
    take()
    assert None not in taken
    assert Counter(taken) == sent and pipe.stats.accepted == 15_000
