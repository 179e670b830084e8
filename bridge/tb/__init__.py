"""TensorBoard logs → the trainsound protocol, with no change to the training code.

- :mod:`.tags`: the table that maps scalar tags (``train/loss``, ``grad_norm/fc1``, …) to protocol messages;
- :mod:`.reader`: tails the event files of a logdir with TensorBoard's own reader (one run per folder);
- :mod:`.mlflow`: the runs of an MLflow tracking server, read through MLflow's client (``mlflow:URI``);
- :mod:`.sender`: every run's steps through one socket;
- :mod:`.follow`: ``trainsound follow LOGDIR | mlflow:URI`` — send what appears to a bridge;
- :mod:`.session`: a logdir or an MLflow run as a session recording, for ``trainsound render``.

Nothing here imports ``tensorboard`` or ``mlflow`` until a logdir or a server is actually read.
"""
