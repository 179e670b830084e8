"""The ``trainsound`` command: its parser loads no output library, its one-off messages are python-osc's."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from trainsound.bridge.cli import main
from trainsound.bridge.receive.sockets import open_udp
from trainsound.bridge.wire.osc import decode_message

HEAVY = ("rtmidi", "pyo", "pyaudio", "torch", "tensorflow", "keras", "mido", "matplotlib", "jack")


def test_building_the_command_imports_no_output_or_framework_library() -> None:
    code = (
        "import sys\n"
        "from trainsound.bridge.cli import build_parser\n"
        "build_parser().parse_args(['bridge', '--no-midi'])\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_send_types_its_words_and_the_bridge_codec_reads_them() -> None:
    sock = open_udp("127.0.0.1", 0, 1 << 16)
    port = sock.getsockname()[1]
    try:
        assert main(["send", "/nn/r/metric/acc", "f:1", "--to", f"127.0.0.1:{port}"]) == 0
        assert main(["send", "/x", "3", "fc1", "nan", "--to", f"127.0.0.1:{port}"]) == 0
        sock.settimeout(2)
        first = decode_message(sock.recv(1024))
        address, (i, s, f) = decode_message(sock.recv(1024))
    finally:
        sock.close()
    assert first == ("/nn/r/metric/acc", (1.0,))
    assert (address, i, s, f != f) == ("/x", 3, "fc1", True)


def test_send_refuses_an_argument_osc_cannot_carry(capsys: Any) -> None:
    assert main(["send", "/x", str(2**70), "--to", "127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trainsound: error: cannot encode /x [1180591620717411303424]:")
    assert "Traceback" not in err
