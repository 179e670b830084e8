"""OSCQuery against the real bridge: HTTP JSON, a real zeroconf browser, a WebSocket client that LISTENs."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from support import BridgeProc, free_udp_port, wait_until
from webrig import free_tcp_port

from trainsound.bridge.wire.osc import decode_message


def get(port: int, path: str, host: str = "127.0.0.1", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read()
            assert not body or r.headers["Content-Type"].startswith("application/json")
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as err:
        return err.code, None


@pytest.fixture
def bridge() -> Iterator[tuple[BridgeProc, int]]:
    port = free_tcp_port()
    b = BridgeProc(["--no-midi", "--stats-interval", "0", "--oscquery", str(port)], free_udp_port())
    try:
        yield b, port
    finally:
        code, err = b.stop()
        assert code == 0, err
        assert "Traceback" not in err


def test_host_info_and_the_tree_of_a_run_that_sent_data(bridge: tuple[BridgeProc, int]) -> None:
    b, port = bridge
    status, info = get(port, "/?HOST_INFO")
    assert status == 200 and info["OSC_PORT"] == b.port and info["OSC_TRANSPORT"] == "UDP"
    assert info["NAME"] == f"trainsound on {socket.gethostname()}" and info["EXTENSIONS"]["LISTEN"] is True
    assert get(port, "/nn/anything?HOST_INFO") == (200, info)  # the path is irrelevant to HOST_INFO
    assert get(port, "/nn/mnist")[0] == 404

    b.send("/nn/mnist/step", 120, 2)
    b.send("/nn/mnist/loss", 0.412)
    b.send("/nn/mnist/grad_norm/conv1", 0.83)
    b.send("/nn/mnist/weight/conv1", 0.002, 0.11, 0.49, 3.2, 0.0031)
    b.send("/nn/mnist/event", "start")
    wait_until(lambda: get(port, "/nn/mnist/event")[0] == 200, 10, "the run's last message in the tree")

    status, root = get(port, "/")
    assert status == 200 and root["FULL_PATH"] == "/" and set(root["CONTENTS"]) == {"nn", "trainsound"}
    run = root["CONTENTS"]["nn"]["CONTENTS"]["mnist"]
    assert set(run["CONTENTS"]) == {"step", "loss", "grad_norm", "weight", "event"}
    assert run["CONTENTS"]["step"]["VALUE"] == [120, 2] and run["CONTENTS"]["step"]["TYPE"] == "ii"
    loss = run["CONTENTS"]["loss"]
    assert loss["FULL_PATH"] == "/nn/mnist/loss" and loss["TYPE"] == "f" and loss["ACCESS"] == 3
    assert loss["VALUE"][0] == pytest.approx(0.412, rel=1e-6) and "loss" in loss["DESCRIPTION"]
    assert run["CONTENTS"]["grad_norm"]["CONTENTS"]["conv1"]["FULL_PATH"] == "/nn/mnist/grad_norm/conv1"
    assert root["CONTENTS"]["trainsound"]["CONTENTS"]["status"]["ACCESS"] == 2

    assert get(port, "/nn/mnist/grad_norm") == (200, run["CONTENTS"]["grad_norm"])  # a subtree
    assert get(port, "/nn/mnist/weight/conv1?TYPE") == (200, {"TYPE": "fffff"})
    assert get(port, "/nn/mnist/event?VALUE") == (200, {"VALUE": ["start"]})
    assert get(port, "/nn/mnist?TYPE") == (200, {})
    assert get(port, "/trainsound/ping?VALUE") == (204, None)
    assert get(port, "/nn/mnist/loss?GABBAGABBAHEY")[0] == 400
    assert get(port, "/nn/mnist/grad_norm/conv9")[0] == 404
    # A page that reaches us under a name of its own (DNS rebinding) is refused.
    assert get(port, "/", headers={"Host": f"rebind.example:{port}"})[0] == 403
    assert get(port, "/", host="localhost")[0] == 200
    assert b.status()["oscquery"]["url"] == f"http://127.0.0.1:{port}/"


def test_a_zeroconf_browser_finds_the_service(bridge: tuple[BridgeProc, int]) -> None:
    """A real python-zeroconf ServiceBrowser on loopback (multicast on ``lo`` works in this sandbox)."""
    from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

    _, port = bridge
    found: list[str] = []

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.append(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.append(name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    zc = Zeroconf(interfaces=["127.0.0.1"])
    browser = ServiceBrowser(zc, "_oscjson._tcp.local.", Listener())
    try:
        def ours() -> Any:
            for name in list(found):
                info = zc.get_service_info("_oscjson._tcp.local.", name, 2000)
                if info is not None and info.port == port:
                    return info
            return None

        info = wait_until(ours, 15, "the bridge's _oscjson._tcp record")
        assert info.parsed_addresses() == ["127.0.0.1"]
        assert info.name.startswith(f"trainsound on {socket.gethostname()}")
        assert get(port, "/?HOST_INFO")[1]["NAME"] == f"trainsound on {socket.gethostname()}"
    finally:
        browser.cancel()
        zc.close()


async def ws_session(b: BridgeProc, port: int) -> dict[str, Any]:
    got: dict[str, Any] = {"frames": [], "notices": []}
    async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{port}/") as ws:

        async def until(check: Any, what: str, timeout: float = 10.0) -> None:
            async def loop() -> None:
                while not check():
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        got["frames"].append(decode_message(msg.data))
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        got["notices"].append(json.loads(msg.data))
                    else:
                        raise AssertionError(f"the WebSocket ended while waiting for {what}: {msg}")
            try:
                await asyncio.wait_for(loop(), timeout)
            except TimeoutError:
                raise AssertionError(f"{what} not received; got {got}") from None

        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/nn/live/loss"}))
        await asyncio.sleep(0.2)  # the LISTEN is taken before the values come
        for i in range(5):
            b.send("/nn/live/loss", 1.0 / (i + 1))
            await until(lambda n=i + 1: len(got["frames"]) >= n, f"value {i}")
        # A new layer appears: the path is announced (and so is the container a client reloads).
        b.send("/nn/live/grad_norm/fc2", 0.5)
        await until(lambda: {"COMMAND": "PATH_ADDED", "DATA": "/nn/live/grad_norm/fc2"} in got["notices"],
                    "PATH_ADDED")
        await ws.send_str(json.dumps({"COMMAND": "IGNORE", "DATA": "/nn/live/loss"}))
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/nn/live/grad_norm/fc2"}))
        await asyncio.sleep(0.2)
        b.send("/nn/live/loss", 9.0)  # ignored now
        b.send("/nn/live/grad_norm/fc2", 0.75)
        await until(lambda: got["frames"][-1][0] == "/nn/live/grad_norm/fc2" and got["frames"][-1][1][0] == 0.75,
                    "the newly listened address")
        await ws.send_str("not json")  # logged, never fatal
        b.send("/nn/live/grad_norm/fc2", 0.125)
        await until(lambda: got["frames"][-1][1][0] == 0.125, "a value after a bad message")
    return got


def test_a_websocket_client_listens_and_hears_paths_added(bridge: tuple[BridgeProc, int]) -> None:
    b, port = bridge
    b.send("/nn/live/step", 1)
    wait_until(lambda: get(port, "/nn/live/step")[0] == 200, 10, "the run in the tree")
    got = asyncio.run(ws_session(b, port))
    losses = [args[0] for address, args in got["frames"] if address == "/nn/live/loss"]
    assert losses == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2], rel=1e-6)  # float32 on the wire, in order
    assert 9.0 not in losses  # IGNOREd
    assert {"COMMAND": "PATH_CHANGED", "DATA": "/nn/live/grad_norm"} in got["notices"]
    assert not any(n["DATA"] == "/nn/live/step" for n in got["notices"])  # known before the client came
    b.stop()
    assert "OSCQuery: 127.0.0.1 sent a message that is not {COMMAND, DATA} JSON" in b.stderr


def test_runs_forgotten_are_removed(tmp_path: Any) -> None:
    """``[bridge].max_runs = 1``: a second run makes the first one go; a listening client hears PATH_REMOVED."""
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[bridge]\nmax_runs = 1\n")
    port = free_tcp_port()
    b = BridgeProc(["--no-midi", "--config", str(cfg), "--oscquery", str(port)], free_udp_port())
    try:
        b.send("/nn/old/loss", 1.0)
        wait_until(lambda: get(port, "/nn/old/loss")[0] == 200, 10, "the first run")

        async def session() -> list[dict[str, Any]]:
            notices: list[dict[str, Any]] = []
            async with aiohttp.ClientSession() as s, s.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
                await asyncio.sleep(0.2)
                b.send("/nn/new/loss", 2.0)
                while {"COMMAND": "PATH_REMOVED", "DATA": "/nn/old/loss"} not in notices:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    notices.append(json.loads(msg.data))
            return notices

        notices = asyncio.run(session())
        assert {"COMMAND": "PATH_ADDED", "DATA": "/nn/new/loss"} in notices
        assert get(port, "/nn/old")[0] == 404 and get(port, "/nn/new/loss")[0] == 200
    finally:
        b.stop()


def test_beyond_loopback_the_allowlist_decides() -> None:
    """Served on every interface: this machine's LAN address is let in by its network, refused otherwise."""
    lan = next((a for a in _own_ipv4() if not a.startswith("127.")), None)
    if lan is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    for allow, want in ((f"{lan}/32", 200), ("10.255.255.0/24" if not lan.startswith("10.") else "172.31.0.0/16", 403)):
        port = free_tcp_port()
        b = BridgeProc(["--no-midi", "--oscquery", f"0.0.0.0:{port}", "--oscquery-allow", allow,
                        "--oscquery-allow", "fd00::/8"], free_udp_port())
        try:
            assert get(port, "/?HOST_INFO", host=lan)[0] == want
            assert get(port, "/?HOST_INFO")[0] == 200  # loopback always
        finally:
            b.stop()


def _own_ipv4() -> list[str]:
    import ifaddr

    return [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)]
