"""Alarms: the fault detectors (pure, one value at a time), the watch that turns their findings into
alarms and ticks, the alarm options (``[alarm]`` and ``[alarms]``), and alarms as mapped values.

``render``/``replay --alarms`` (alarms over a recording) replay through the pipeline, so they live
with the replay loop in :mod:`trainsound.bridge.replay.alarms`. docs/alarms.md.
"""
