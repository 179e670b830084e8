"""Which MIDI APIs python-rtmidi should try, in order, on this machine."""

from __future__ import annotations

import os
import sys

#: Our MIDI API names → python-rtmidi's constants.
RTMIDI_APIS = {
    "alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE", "winmm": "API_WINDOWS_MM",
}


def api_candidates(choice: str) -> list[str]:
    """The rtmidi APIs to try, in order, for a config choice.

    >>> api_candidates("jack")
    ['jack']
    """
    if choice != "auto":
        return [choice]
    if sys.platform.startswith("linux"):
        # ALSA's sequencer needs /dev/snd/seq; without it only JACK can work.
        return ["alsa", "jack"] if os.path.exists("/dev/snd/seq") else ["jack"]
    if sys.platform == "darwin":
        return ["coremidi"]
    if sys.platform == "win32":
        return ["winmm"]
    return ["jack"]
