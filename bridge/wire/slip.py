"""OSC 1.1 stream framing: SLIP (RFC 1055) with an END byte on both sides of each packet.

TCP carries what UDP cannot (SSH tunnels forward TCP only). The decoder is
incremental and bounded: a frame longer than ``max_frame`` is discarded up to
its END and reported once, so a peer can never make the bridge buffer more
than ``max_frame`` bytes per connection.

>>> d = SlipDecoder(max_frame=64)
>>> d.feed(encode(b"/a\\x00\\x00") + encode(b"\\xc0\\xdb"))
[b'/a\\x00\\x00', b'\\xc0\\xdb']
"""

from __future__ import annotations

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

_END = bytes((END,))
_ESC = bytes((ESC,))
_ESC_END = bytes((ESC, ESC_END))
_ESC_ESC = bytes((ESC, ESC_ESC))


def encode(packet: bytes) -> bytes:
    """Frame one packet: END, escaped bytes, END (the double-END form of OSC 1.1)."""
    return _END + packet.replace(_ESC, _ESC_ESC).replace(_END, _ESC_END) + _END


class SlipError(ValueError):
    """A frame could not be decoded; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class SlipDecoder:
    """Turns a byte stream into packets; errors are collected in :attr:`errors` as reasons."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skipping = False
        self.errors: list[SlipError] = []

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the complete packets in it (empty frames between ENDs are skipped)."""
        out: list[bytes] = []
        start = 0
        while True:
            end = data.find(_END, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                if len(self._buf) + len(chunk) > self.max_frame:
                    # Too long: forget it and skip to the next END, never buffering it.
                    self._buf.clear()
                    self._skipping = True
                    self.errors.append(SlipError("frame_too_large", f"SLIP frame longer than {self.max_frame} bytes"))
                else:
                    self._buf += chunk
            if end < 0:
                return out
            if self._skipping:
                self._skipping = False
            elif self._buf:
                try:
                    out.append(self._unescape(bytes(self._buf)))
                except SlipError as err:
                    self.errors.append(err)
                self._buf.clear()
            start = end + 1

    @staticmethod
    def _unescape(frame: bytes) -> bytes:
        if _ESC not in frame:
            return frame
        out = bytearray()
        i, n = 0, len(frame)
        while i < n:
            j = frame.find(_ESC, i)
            if j < 0:
                out += frame[i:]
                break
            out += frame[i:j]
            nxt = frame[j + 1 : j + 2]
            if nxt == b"\xdc":
                out.append(END)
            elif nxt == b"\xdd":
                out.append(ESC)
            else:
                raise SlipError("bad_slip_escape", f"ESC followed by {nxt.hex() or 'end of frame'}")
            i = j + 2
        return bytes(out)

    @property
    def buffered(self) -> int:
        return len(self._buf)
