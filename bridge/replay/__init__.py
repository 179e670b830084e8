"""Recordings played back through the pipeline: the replay loop and the step clock
(``trainsound replay``), ``trainsound render``, and alarms over a recording (``--alarms``).
"""
