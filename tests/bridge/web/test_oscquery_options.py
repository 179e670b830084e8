"""The ``[oscquery]`` table, ``--oscquery``/``--oscquery-allow``, who may connect, and the missing extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainsound.bridge.config import ConfigError, default, from_dict, output_options
from trainsound.bridge.web.oscquery_options import OscQueryOptions, networks_for, with_oscquery


def test_the_table_is_validated_and_errors_name_the_key() -> None:
    cfg = from_dict({"oscquery": {"listen": "0.0.0.0:9300", "allow": ["10.0.0.0/8"], "name": "lab", "zeroconf": False}})
    opts: OscQueryOptions = output_options(cfg, "oscquery", None)
    assert (opts.listen, opts.allow, opts.name, opts.zeroconf) == (("0.0.0.0", 9300), ("10.0.0.0/8",), "lab", False)
    with pytest.raises(ConfigError, match=r"oscquery\.allow\[0\] must be a network in CIDR form, got 'lan'"):
        from_dict({"oscquery": {"listen": "9300", "allow": ["lan"]}})
    with pytest.raises(ConfigError, match=r"oscquery\.listen port must be in 1\.\.65535"):
        from_dict({"oscquery": {"listen": "70000"}})
    with pytest.raises(ConfigError, match=r"oscquery\.zeroconf must be true or false, got 'yes'"):
        from_dict({"oscquery": {"zeroconf": "yes"}})
    with pytest.raises(ConfigError, match=r"oscquery\.name must be at most 63 UTF-8 bytes, got 64"):
        from_dict({"oscquery": {"name": "x" * 64}})
    with pytest.raises(ConfigError, match=r"oscquery\.port"):
        from_dict({"oscquery": {"port": 9300}})


def test_off_by_default_and_the_flags_override_the_table() -> None:
    assert output_options(default(), "oscquery", OscQueryOptions()).listen is None
    cfg = with_oscquery(from_dict({"oscquery": {"listen": "9300", "name": "lab"}}), "0.0.0.0:9400", ["192.168.0.0/16"])
    opts = output_options(cfg, "oscquery", None)
    assert (opts.listen, opts.allow, opts.name) == (("0.0.0.0", 9400), ("192.168.0.0/16",), "lab")
    assert output_options(with_oscquery(default(), "9500", None), "oscquery", None).listen == ("127.0.0.1", 9500)
    with pytest.raises(ConfigError, match="--oscquery-allow needs --oscquery"):
        with_oscquery(default(), None, ["10.0.0.0/8"])
    with pytest.raises(ConfigError, match=r"--oscquery-allow\[0\] must be a network in CIDR form"):
        with_oscquery(default(), "9500", ["10.0.0.300/8"])


def test_loopback_alone_by_default_and_an_allowlist_beyond_it() -> None:
    assert [str(n) for n in networks_for("::1", ())] == ["127.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError, match=r"refusing to serve OSCQuery on 0\.0\.0\.0.*--oscquery-allow CIDR.*"
                                          r"\[oscquery\]\.allow"):
        networks_for("0.0.0.0", ())
    assert "10.0.0.0/8" in [str(n) for n in networks_for("0.0.0.0", ("10.0.0.0/8",))]


def run_bridge(udp_port: int, *args: str, pre: str = "") -> subprocess.CompletedProcess[str]:
    code = f"import sys; {pre}from trainsound.bridge.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "bridge", "--no-midi", "--listen", f"127.0.0.1:{udp_port}",
                           *args], capture_output=True, text=True, timeout=30)


def test_beyond_loopback_without_an_allowlist_exits_2_with_one_line(udp_port: int) -> None:
    r = run_bridge(udp_port, "--oscquery", "0.0.0.0:9401")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        "trainsound: error: refusing to serve OSCQuery on 0.0.0.0, which is not a loopback address"), r.stderr
    assert "Traceback" not in r.stderr


def test_without_zeroconf_it_refuses_to_start_naming_the_extra(udp_port: int) -> None:
    # ``sys.modules[name] = None`` is how Python spells "this module cannot be imported".
    r = run_bridge(udp_port, "--oscquery", "9402", pre="sys.modules['zeroconf'] = None; ")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "trainsound: error: --oscquery needs zeroconf: pip install 'trainsound[oscquery]'"), r.stderr
    assert "Traceback" not in r.stderr


def test_a_busy_port_stops_the_bridge_with_one_line(udp_port: int) -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        r = run_bridge(udp_port, "--oscquery", str(port))
    finally:
        busy.close()
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"trainsound: error: cannot serve OSCQuery on 127.0.0.1:{port}: "), r.stderr
