"""TensorBoard logs → the trainsound protocol, with no change to the training code.

- :mod:`.tags`: the table that maps scalar tags (``train/loss``, ``grad_norm/fc1``, …) to protocol messages;
- :mod:`.reader`: tails the event files of a logdir with TensorBoard's own reader (one run per folder);
- :mod:`.follow`: ``trainsound follow LOGDIR`` — send what appears to a bridge;
- :mod:`.session`: a logdir as a session recording, for ``trainsound render LOGDIR``.

Nothing here imports ``tensorboard`` until a logdir is actually read.
"""
