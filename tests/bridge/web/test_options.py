"""The ``[web]`` table, ``--web``/``--web-allow`` and the access rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import BridgeProc, free_udp_port

from trainsound.bridge.config import ConfigError, default, from_dict, output_options
from trainsound.bridge.web.options import Access, WebOptions, parse_web_listen, with_web


def test_web_table_is_validated_and_names_the_key() -> None:
    cfg = from_dict({"web": {"listen": "127.0.0.1:9200", "allow": ["10.0.0.0/8"], "history": 100}})
    opts: WebOptions = output_options(cfg, "web", None)
    assert (opts.listen, opts.allow, opts.history) == (("127.0.0.1", 9200), ("10.0.0.0/8",), 100)
    with pytest.raises(ConfigError, match=r"web\.allow\[0\] must be a network in CIDR form, got 'nope'"):
        from_dict({"web": {"listen": "9200", "allow": ["nope"]}})
    with pytest.raises(ConfigError, match=r"web\.listen port must be in 1\.\.65535"):
        from_dict({"web": {"listen": "0"}})
    with pytest.raises(ConfigError, match="web"):
        from_dict({"web": {"colour": "red"}})


def test_off_by_default_and_the_flags_override_the_table() -> None:
    assert output_options(default(), "web", WebOptions()).listen is None
    cfg = with_web(from_dict({"web": {"listen": "9300"}}), "0.0.0.0:9400", ["192.168.0.0/16"])
    opts = output_options(cfg, "web", None)
    assert opts.listen == ("0.0.0.0", 9400) and opts.allow == ("192.168.0.0/16",)
    assert parse_web_listen("9151", "--web") == ("127.0.0.1", 9151)
    with pytest.raises(ConfigError, match="--web-allow needs --web"):
        with_web(default(), None, ["10.0.0.0/8"])


def test_loopback_needs_no_token_and_refuses_other_peers() -> None:
    a = Access.for_listen("127.0.0.1", ())
    assert a.token is None and a.token_ok(None)
    assert a.allows_peer("127.0.0.1") and a.allows_peer("::1") and not a.allows_peer("10.1.2.3")


def test_beyond_loopback_needs_an_allowlist_and_a_token() -> None:
    with pytest.raises(ConfigError, match=r"refusing to serve the web page on 0\.0\.0\.0.*--web-allow"):
        Access.for_listen("0.0.0.0", ())
    a = Access.for_listen("0.0.0.0", ("10.0.0.0/8",))
    assert a.token is not None and len(a.token) >= 20
    assert a.allows_peer("10.9.8.7") and a.allows_peer("::ffff:10.9.8.7") and not a.allows_peer("192.168.1.1")
    assert a.token_ok(a.token) and not a.token_ok(None) and not a.token_ok(a.token[:-1])
    assert Access.for_listen("0.0.0.0", ("10.0.0.0/8",)).token != a.token


def test_a_busy_web_port_stops_the_bridge_with_one_line(udp_port: int) -> None:
    import socket
    import subprocess
    import sys

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "bridge", "--no-midi", "--listen",
                            f"127.0.0.1:{udp_port}", "--web", str(port)], capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"trainsound: error: cannot serve the web page on 127.0.0.1:{port}: "), r.stderr


def test_web_without_aiohttp_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    """The real CLI with aiohttp made unimportable (a module of that name that raises ImportError, first
    on the path): ``--web`` and ``[web].listen`` exit 2 with one line naming the extra; without them the
    bridge does not need aiohttp."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "aiohttp.py").write_text("raise ImportError('aiohttp hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    cfg = tmp_path / "web.toml"
    cfg.write_text('[web]\nlisten = "127.0.0.1:9"\n')
    base = [sys.executable, "-m", "trainsound.bridge", "bridge", "--no-midi",
            "--listen", f"127.0.0.1:{free_udp_port()}"]
    for extra in (["--web"], ["--config", str(cfg)]):
        r = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("trainsound: error: --web (or [web].listen) needs the web extra")
        assert "pip install '.[web]'" in lines[0]
    # Without the page, aiohttp is never imported: the bridge starts and answers.
    b = BridgeProc(["--no-midi"], free_udp_port(), env=env)
    try:
        b.send("/nn/plain/loss", 1.0)
        assert "web" not in b.status() and b.proc.poll() is None
    finally:
        b.stop()
