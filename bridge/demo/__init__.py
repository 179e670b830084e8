"""``trainsound demo``: the seed CNN trained five ways through real bridge processes, and a gallery of
what each run sounded like (:mod:`.command`; the models and data in :mod:`.models`, the audio features
in :mod:`.features`, the plots and HTML in :mod:`.gallery`)."""

from .command import add_parser, cmd_demo

__all__ = ["add_parser", "cmd_demo"]
