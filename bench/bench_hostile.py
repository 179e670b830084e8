"""Hostile-peer figures of issues 16 and 28 against a real bridge process (about a minute, loopback only).

    .venv/bin/python bench/bench_hostile.py [--python PYTHON]

``--python`` picks the interpreter whose installed ``trainsound`` runs the bridge (e.g. another
checkout's ``.venv/bin/python``), so one command gives the before and after figures. Prints:

- status amplification over UDP: reply bytes / request bytes, one request and 100 in one bundle;
  replies to a burst of 1,000 requests (the rate limit);
- UDP under a TCP END-byte (0xC0) flood from 8 peers: datagrams sent, counted by the bridge, lost;
  ping round trips during the flood;
- a new TCP sender while 8 idle connections hold the cap: time to its first pong (or "never");
- 64 junk run names, then a real run: is the real run accepted;
- NaN alarms sounded for 2,000 distinct addresses in about 1 s;
- issue 28, item 1: one 16 KiB write of 546 pipelined ``/trainsound/snapshot`` requests with 64 runs
  loaded: UDP pings answered and the worst round trip, UDP datagrams lost meanwhile, how long until a
  TCP status answers, snapshot replies sent, and how long SIGTERM takes afterwards;
- issue 28, item 4 (OSC over TCP): 1,100 connections that never finish a frame: descriptors the bridge
  holds, time to a TCP status; then its descriptors exhausted (soft RLIMIT_NOFILE lowered with
  ``prlimit``) with connections queued: the bridge's CPU share (it spun on failed accepts before);
- issue 28, item 9: eight peers at the cap trickling a byte a second: time to a newcomer's pong.
- issue 28, item 2: 20 WebSocket pages that never read (a ping frame every 2 s keeps aiohttp's heartbeat
  content) while 300 streams change every 20 ms: the bridge's RSS growth over 20 s;
- issue 28, item 3: 60,000 distinct addresses in 3 runs with a page open and reading: RSS growth, addresses the
  feed keeps, datagrams lost in the kernel; then the web thread's cost with a page open: the feed full (16,384
  addresses) while one run changes 600 of them, 3,000 values/s: the bridge's CPU share.

``--only NAME`` (repeatable) runs some trials: a trial's name (amplification, end_flood, junk_runs,
nan_alarms, idle_lockout, snapshot_burst, idle_connections, out_of_descriptors, trickle, lazy_pages,
many_addresses, page_cost), or ``16`` / ``28`` for an issue's.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from support import free_udp_port  # noqa: E402
from webrig import free_tcp_port  # noqa: E402

from trainsound.bridge.wire.osc import decode_message, encode_bundle, encode_message  # noqa: E402
from trainsound.bridge.wire.slip import SlipDecoder  # noqa: E402
from trainsound.bridge.wire.slip import encode as slip  # noqa: E402

STATUS = encode_message("/trainsound/status")
PING = encode_message("/trainsound/ping")


def tcp_ask(port: int, packet: bytes, want: str, timeout: float = 5.0) -> tuple[Any, float] | None:
    """Send one packet over TCP/SLIP; the first reply whose address is ``want`` and the seconds it took."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(slip(packet))
            dec = SlipDecoder(1 << 22)
            while time.monotonic() - t0 < timeout:
                data = c.recv(1 << 16)
                if not data:
                    return None
                for p in dec.feed(data):
                    address, args = decode_message(p)
                    if address == want:
                        return args, time.monotonic() - t0
    except OSError:
        return None
    return None


def status(port: int) -> dict[str, Any]:
    got = tcp_ask(port, STATUS, "/trainsound/status.reply", 10.0)
    if got is None:
        print("  no status over TCP within 10 s")
        return {"datagrams": 0, "dropped": {}, "runs": [], "mapping": {"alarms": 0}}
    return dict(json.loads(str(got[0][0])))


def udp_collect(sock: socket.socket, seconds: float) -> tuple[int, int]:
    """(replies, bytes) arriving on ``sock`` within ``seconds``."""
    n = size = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = sock.recv(1 << 17)
        except (TimeoutError, OSError):
            continue
        n += 1
        size += len(data)
    return n, size


def amplification(port: int, u: socket.socket) -> None:
    # A realistic status: 64 runs of 20 layers, some names non-ASCII.
    for r in range(64):
        for layer in range(20):
            u.sendto(encode_message(f"/nn/rün{r:02d}-éxperiment/grad_norm/layer{layer:02d}.wéight", [0.5]),
                     ("127.0.0.1", port))
        time.sleep(0.01)
    time.sleep(0.3)
    u.sendto(STATUS, ("127.0.0.1", port))
    n, size = udp_collect(u, 1.0)
    print(f"status over UDP: request {len(STATUS)} B → {n} reply/replies, {size} B: {size / len(STATUS):,.2f}×")
    bundle = encode_bundle([STATUS] * 100)
    u.sendto(bundle, ("127.0.0.1", port))
    n, size = udp_collect(u, 1.0)
    print(f"100 status requests in one {len(bundle)} B bundle → {n} replies, {size} B: {size / len(bundle):,.2f}×")
    for _ in range(1000):
        u.sendto(PING, ("127.0.0.1", port))
    n, size = udp_collect(u, 1.5)
    print(f"1,000 pings in a burst → {n} pongs ({size} B for {1000 * len(PING)} B sent)")
    big = tcp_ask(port, STATUS, "/trainsound/status.reply")
    print(f"status over TCP: {len(str(big[0][0])) if big else 0} characters of JSON")


def end_flood(port: int, u: socket.socket, seconds: float = 3.0) -> None:
    before = status(port)
    stop = threading.Event()
    junk = b"\xc0" * (1 << 16)

    def flooder() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as c:
                while not stop.is_set():
                    c.sendall(junk)
        except OSError:
            pass

    threads = [threading.Thread(target=flooder, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    sent = 0
    msg = encode_message("/nn/flood/loss", [0.5])
    rtts: list[float] = []
    t_end = time.monotonic() + seconds
    next_ping = 0.0
    p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    p.settimeout(0.5)
    while time.monotonic() < t_end:
        for _ in range(50):
            u.sendto(msg, ("127.0.0.1", port))
        sent += 50
        if time.monotonic() >= next_ping:
            t0 = time.monotonic()
            p.sendto(PING, ("127.0.0.1", port))
            try:
                p.recv(256)
                rtts.append(time.monotonic() - t0)
            except TimeoutError:
                rtts.append(math.inf)
            next_ping = time.monotonic() + 0.25
        time.sleep(0.005)
    stop.set()
    for t in threads:
        t.join(5)
    time.sleep(1.0)
    after = status(port)
    counted = after["datagrams"] - before["datagrams"]
    lost = (after.get("kernel_drops") or 0) - (before.get("kernel_drops") or 0)
    answered = [r for r in rtts if math.isfinite(r)]
    print(f"TCP END flood (8 peers, {seconds:g} s): {sent} UDP datagrams sent, {counted} counted by the bridge, "
          f"{lost} lost in the kernel ({lost / sent:.1%}); pings answered {len(answered)}/{len(rtts)}, "
          f"worst {max(answered, default=math.inf) * 1000:.0f} ms")


def idle_lockout(port: int) -> None:
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    time.sleep(0.3)
    t0 = time.monotonic()
    got = None
    while got is None and time.monotonic() - t0 < 8.0:
        got = tcp_ask(port, PING, "/trainsound/pong", 1.0)
    took = time.monotonic() - t0
    print(f"new TCP sender with 8 idle connections at the cap: "
          f"{'pong after ' + format(took, '.2f') + ' s' if got else 'no pong within 8 s'}")
    for s in idle:
        s.close()


def junk_runs(port: int, u: socket.socket) -> None:
    for i in range(64):
        u.sendto(encode_message(f"/nn/junk{i}/loss", [1.0]), ("127.0.0.1", port))
    time.sleep(0.3)
    before = status(port)
    u.sendto(encode_message("/nn/real-run/loss", [1.0]), ("127.0.0.1", port))
    time.sleep(0.3)
    after = status(port)
    ok = "real-run" in after.get("runs", [])
    print(f"64 junk runs, then a real one: real run {'accepted' if ok else 'REFUSED'} "
          f"(too_many_runs {before['dropped'].get('too_many_runs', 0)} → {after['dropped'].get('too_many_runs', 0)})")


def nan_alarms(port: int, u: socket.socket) -> None:
    before = status(port)["mapping"]["alarms"]
    t0 = time.monotonic()
    for i in range(2000):
        u.sendto(encode_message(f"/nn/nanrun/grad_norm/l{i}", [math.nan]), ("127.0.0.1", port))
        if i % 100 == 99:
            time.sleep(0.05)
    took = time.monotonic() - t0
    time.sleep(0.3)
    after = status(port)["mapping"]["alarms"]
    print(f"NaN to 2,000 distinct addresses in {took:.1f} s: {after - before} alarms sounded")


def _ping(u: socket.socket, port: int, timeout: float) -> float:
    """Seconds to a UDP pong (``inf``: none within ``timeout``)."""
    t0 = time.monotonic()
    u.settimeout(timeout)
    u.sendto(PING, ("127.0.0.1", port))
    try:
        while not u.recv(1 << 17).startswith(b"/trainsound/pong"):
            pass
    except OSError:
        return math.inf
    return time.monotonic() - t0


def snapshot_burst(port: int, u: socket.socket) -> None:
    for r in range(64):
        for layer in range(20):
            u.sendto(encode_message(f"/nn/run{r:02d}/grad_norm/layer{layer:02d}", [0.5]), ("127.0.0.1", port))
        time.sleep(0.01)
    time.sleep(0.5)
    before = status(port)
    snap = slip(encode_message("/trainsound/snapshot"))
    burst = snap * (16_384 // len(snap))
    replies = [0]
    msg = encode_message("/nn/train/loss", [0.5])

    def read(c: socket.socket) -> None:
        c.settimeout(2.0)
        dec = SlipDecoder(1 << 22)
        with contextlib.suppress(OSError):
            while data := c.recv(1 << 20):
                replies[0] += sum(p.startswith(b"/trainsound/snapshot.reply") for p in dec.feed(data))

    p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with socket.create_connection(("127.0.0.1", port)) as c:
        reader = threading.Thread(target=read, args=(c,), daemon=True)
        reader.start()
        c.sendall(burst)
        rtts, sent = [], 0
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:  # a training process's stream, and a ping every 50 ms
            for _ in range(50):
                u.sendto(msg, ("127.0.0.1", port))
            sent += 50
            rtts.append(_ping(p, port, 0.25))
            time.sleep(0.02)
        t0 = time.monotonic()
        got = tcp_ask(port, STATUS, "/trainsound/status.reply", 30.0)
        status_after = time.monotonic() - t0 if got else math.inf
        reader.join(30)
    p.close()
    after = status(port)
    lost = (after.get("kernel_drops") or 0) - (before.get("kernel_drops") or 0)
    answered = [r for r in rtts if math.isfinite(r)]
    print(f"546 pipelined snapshots over TCP (64 runs, {len(burst)} B in one write): pings answered "
          f"{len(answered)}/{len(rtts)}, worst {max(answered, default=math.inf) * 1000:.0f} ms; "
          f"{lost} of {sent} UDP datagrams lost in the kernel; a TCP status {status_after:.2f} s later; "
          f"{replies[0]} snapshot replies; reply_rate_limited {after['noted'].get('reply_rate_limited', 0)}")


def idle_connections(port: int, pid: int) -> None:
    before = len(os.listdir(f"/proc/{pid}/fd"))
    conns, t0 = [], time.monotonic()
    for _ in range(1100):
        with contextlib.suppress(OSError):
            c = socket.create_connection(("127.0.0.1", port), timeout=2.0)
            c.send(b"/nn/unfinished")
            conns.append(c)
    took = time.monotonic() - t0
    time.sleep(0.2)
    held = len(os.listdir(f"/proc/{pid}/fd")) - before
    t0 = time.monotonic()
    got = None
    while got is None and time.monotonic() - t0 < 10:
        got = tcp_ask(port, STATUS, "/trainsound/status.reply", 1.0)
    when = f"after {time.monotonic() - t0:.2f} s" if got else "none in 10 s"
    print(f"1,100 connections without a whole frame (opened in {took:.1f} s): the bridge holds {held} more "
          f"descriptors; TCP status {when}")
    for c in conns:
        c.close()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def out_of_descriptors(port: int, pid: int) -> None:
    used = len(os.listdir(f"/proc/{pid}/fd"))
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 3, hard))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    for s in held:
        s.sendall(slip(encode_message("/nn/held/loss", [0.5])))
    time.sleep(0.3)
    queued = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    cpu0, t0 = _cpu(pid), time.monotonic()
    time.sleep(3.0)
    share = (_cpu(pid) - cpu0) / (time.monotonic() - t0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        rtt = _ping(u, port, 1.0)
    for s in held + queued:
        s.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    print(f"descriptors exhausted, 5 connections queued: the bridge used {share:.0%} of a core for 3 s; "
          f"UDP ping {rtt * 1000:.0f} ms")


def trickle(port: int) -> None:
    peers = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    frame = slip(encode_message("/nn/trickle/loss", [0.5]))[:-1]
    stop = threading.Event()

    def drip() -> None:
        i = 0
        while not stop.wait(1.0):  # one byte a second each, never a whole frame
            for s in peers:
                with contextlib.suppress(OSError):
                    s.send(frame[i % len(frame) : i % len(frame) + 1])
            i += 1

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    got = None
    while got is None and time.monotonic() - t0 < 8.0:
        got = tcp_ask(port, PING, "/trainsound/pong", 0.5)
    took = time.monotonic() - t0
    stop.set()
    t.join()
    for s in peers:
        s.close()
    print(f"8 peers trickling 1 byte/s at the cap: a new TCP sender's "
          f"{'pong after ' + format(took, '.2f') + ' s' if got else 'ping unanswered for 8 s'}")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def ws_open(port: int, rcvbuf: int = 4096) -> socket.socket:
    """A WebSocket to the page's ``/ws``, opened by hand (only the handshake is read)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
              f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s


def lazy_pages(port: int, u: socket.socket, pid: int, web: int, seconds: float = 20.0) -> None:
    lazy = [ws_open(web) for _ in range(20)]
    stop = threading.Event()

    def keepalive() -> None:
        while not stop.wait(2.0):
            for s in lazy:
                with contextlib.suppress(OSError):
                    s.sendall(struct.pack("!BB", 0x89, 0x80) + os.urandom(4))  # a masked, empty ping

    k = threading.Thread(target=keepalive, daemon=True)
    k.start()
    base = rss_mb(pid)
    t_end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < t_end:
        for layer in range(300):
            u.sendto(encode_message(f"/nn/big/grad_norm/layer{layer:03d}.weight", [0.1 + (i % 97) / 100]),
                     ("127.0.0.1", port))
        i += 1
        time.sleep(0.02)
    grown = rss_mb(pid) - base
    web_health = status(port).get("web", {})
    stop.set()
    k.join(5)
    for s in lazy:
        s.close()
    print(f"20 pages that never read, {seconds:g} s of 300 streams every 20 ms: RSS {base:.0f} → {base + grown:.0f} MB "
          f"(+{grown:.0f} MB); web: skipped {web_health.get('skipped')}, closed_slow {web_health.get('closed_slow')}")


@contextlib.contextmanager
def reading_page(web: int) -> Any:
    """A page open on the bridge's ``/ws`` that reads everything it is sent (on a thread of its own)."""
    page = ws_open(web, 1 << 20)
    stop = threading.Event()

    def read() -> None:
        page.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                page.recv(1 << 20)

    r = threading.Thread(target=read, daemon=True)
    r.start()
    try:
        yield
    finally:
        stop.set()
        r.join(5)
        page.close()


def many_addresses(port: int, u: socket.socket, pid: int, web: int, n: int = 60_000) -> None:
    with reading_page(web):
        before = status(port)
        base = rss_mb(pid)
        t0 = time.monotonic()
        for i in range(n):
            u.sendto(encode_message(f"/nn/addr{i % 3}/grad_norm/layer{i}", [0.5]), ("127.0.0.1", port))
            if i % 500 == 499:
                time.sleep(0.05)
        took = time.monotonic() - t0
        time.sleep(2.0)
        after = status(port)
        grown = rss_mb(pid) - base
    feed = after.get("outputs", {}).get("feed", {})
    lost = (after.get("kernel_drops") or 0) - (before.get("kernel_drops") or 0)
    print(f"{n:,} distinct addresses in {took:.1f} s with a page open: RSS +{grown:.0f} MB "
          f"({grown * 2**20 / n:,.0f} B an address); feed keeps {feed.get('addresses', 'all')}, "
          f"shed {feed.get('shed', '–')}; {lost} datagrams lost in the kernel")


def page_cost(port: int, u: socket.socket, pid: int, web: int, seconds: float = 5.0, fill: int = 16_384 - 600) -> None:
    with reading_page(web):
        for i in range(fill):  # the feed full (its bound: 16,384) once the live run's 600 are in
            u.sendto(encode_message(f"/nn/fill{i % 4}/grad_norm/layer{i // 4}", [0.5]), ("127.0.0.1", port))
            if i % 500 == 499:
                time.sleep(0.05)
        time.sleep(2.0)
        before = status(port)
        cpu0, t0 = _cpu(pid), time.monotonic()
        step = 0
        while time.monotonic() - t0 < seconds:  # one run: 600 layers, 30 a datagram, a datagram every 10 ms
            u.sendto(encode_bundle([encode_message(f"/nn/live/grad_norm/layer{(step * 30 + k) % 600}",
                                                   [0.1 + (step % 97) / 100]) for k in range(30)]),
                     ("127.0.0.1", port))
            step += 1
            time.sleep(0.01)
        share = (_cpu(pid) - cpu0) / (time.monotonic() - t0)
        after = status(port)
    lost = (after.get("kernel_drops") or 0) - (before.get("kernel_drops") or 0)
    feed = after.get("outputs", {}).get("feed", {})
    print(f"a page open on {feed.get('addresses', '?'):,} addresses while one run changes 600 of them "
          f"({step * 30 / seconds:,.0f} values/s for {seconds:g} s): the bridge used {share:.1%} of a core; "
          f"{lost} datagrams lost in the kernel; shed {feed.get('shed', '–')}")


def start(python: str, web: int | None = None) -> tuple[subprocess.Popen[str], int]:
    port = free_udp_port()
    extra: list[str] = []
    if web:  # a row per layer (no voice groups): every address is a row of the page
        cfg = Path(tempfile.mkdtemp()) / "rows.toml"
        cfg.write_text('[groups]\nmode = "none"\n')
        extra = ["--web", f"127.0.0.1:{web}", "--config", str(cfg)]
    proc = subprocess.Popen([python, "-m", "trainsound.bridge", "-q", "bridge", "--listen", f"127.0.0.1:{port}",
                             "--no-midi", *extra], stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    t0 = time.monotonic()
    while tcp_ask(port, PING, "/trainsound/pong", 0.5) is None:
        if proc.poll() is not None or time.monotonic() - t0 > 20:
            raise SystemExit(f"bridge did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    return proc, port


def stop(proc: subprocess.Popen[str]) -> int:
    """Stop the bridge; the number of lines it logged (WARNING and above)."""
    t0 = time.monotonic()
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        print("  SIGTERM not obeyed within 20 s (killed)")
    took = time.monotonic() - t0
    if took > 1.0:
        print(f"  SIGTERM took {took:.1f} s")
    return len(err.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter whose trainsound runs the bridge")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this trial, or 16 / 28 for an issue's (repeatable)")
    args = ap.parse_args()
    print(f"bridge: {args.python}")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    # A fresh bridge per trial: each starts from no runs and zero counters.
    issue16: list[Any] = [amplification, end_flood, junk_runs, nan_alarms, idle_lockout]
    issue28: list[Any] = [snapshot_burst, idle_connections, out_of_descriptors, trickle, lazy_pages, many_addresses,
                          page_cost]
    only = set(args.only or ())
    for trial in issue16 + issue28:
        if only and not ({trial.__name__, "16" if trial in issue16 else "28"} & only):
            continue
        web = free_tcp_port() if trial in (lazy_pages, many_addresses, page_cost) else None
        proc, port = start(args.python, web)
        try:
            if web is not None:
                trial(port, u, proc.pid, web)
            elif trial in (idle_lockout, trickle):
                trial(port)
            elif trial in (idle_connections, out_of_descriptors):
                trial(port, proc.pid)
            else:
                trial(port, u)
        finally:
            print(f"  (bridge log: {stop(proc)} lines at WARNING and above)")


if __name__ == "__main__":
    main()
