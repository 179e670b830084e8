"""``follow mlflow:URI``: the runs of an MLflow tracking server as a source of scalars, through MLflow's own client.

A lab's server may hold thousands of runs, so a poll costs what changed, and the server is asked little:

- one paged search for the runs in state ``RUNNING`` (and one for those that ended since the last poll:
  a short run may start and end between two polls); finished runs are not read unless ``--run`` names one
  (or ``--once``, which sends what is there);
- a run's latest metrics (in the search's answer) say which of its keys moved: only those keys' histories are
  read, from where the last read stopped, a page at a time (at most :data:`PAGE` rows per key and poll);
- what is kept per run is its name and one offset per key; a run that ended is forgotten.

A server that goes away is one line and a retry every poll; when it answers again, reading resumes where it
stopped (one more line). ``mlflow`` (``mlflow-skinny`` is enough) is imported only here.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, TrainsoundError
from ..wire.protocol import sanitize
from .reader import Scalar

__all__ = ["PAGE", "MlflowSource", "MlflowSourceError", "load_client"]

logger = logging.getLogger(__name__)

#: Runs per search page, and metric rows per history request.
PAGE = 1000
#: How often the list of experiments is asked again (all-experiments mode), in seconds.
EXPERIMENTS_EVERY = 30.0
#: Slack on the "ended since the last poll" search: the server's clock and ours may disagree.
END_SLACK_MS = 60_000
_RUN_ID = re.compile(r"[0-9a-f]{32}")


class MlflowSourceError(TrainsoundError, OSError):
    """The MLflow source cannot be used (no ``mlflow`` installed, a run that does not exist)."""


def load_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri`` that fails fast when the server is away (we retry on our own clock)."""
    if not uri:
        raise ConfigError("mlflow: needs a tracking URI, e.g. mlflow:http://127.0.0.1:5000")
    # MLflow's HTTP client retries with exponential backoff for minutes by default: a poll would hang.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise MlflowSourceError("following MLflow needs mlflow: pip install 'trainsound[mlflow]'") from err
    return MlflowClient(tracking_uri=uri)


def _down_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException, OSError)  # requests' errors are OSErrors


def _one_line(err: BaseException) -> str:
    """The cause, short: MLflow wraps a refused connection in three layers of exception text."""
    text = str(err)
    cause = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if cause:
        return cause.group(1).strip()
    lines = text.strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]


@dataclass
class _Run:
    name: str
    latest: dict[str, tuple[int, int]] = field(default_factory=dict)  # key → (step, timestamp) read up to
    offset: dict[str, int] = field(default_factory=dict)  # key → history rows read
    more: bool = False  # a key's last page was full: more rows wait on the server


class MlflowSource:
    """Scalars of an MLflow server's runs (see the module's docstring).

    Args:
        uri: tracking URI (``http://host:5000``, or any URI ``MlflowClient`` takes).
        experiment: only this experiment's runs (waited for, said once, if it does not exist yet).
        run: only this run, by ID or name (the newest of that name), finished or not.
        include_finished: also the runs that had finished before the first poll (``--once``, ``render``).
    """

    def __init__(self, uri: str, *, experiment: str | None = None, run: str | None = None,
                 include_finished: bool = False) -> None:
        self.uri = uri
        self.client = load_client(uri)
        # The paged form of the metric history (max_results, page_token) is the store's; MlflowClient only
        # returns a whole history, whose cost grows with the run.
        self._store = self.client._tracking_client.store
        self._down_errors = _down_errors()
        self.experiment, self.run, self.include_finished = experiment, run, include_finished
        self._runs: dict[str, _Run] = {}
        self._names: dict[str, str] = {}  # trainsound run name → run ID (two MLflow runs may share a name)
        self._ended: list[str] = []
        self._gone: dict[str, int] = {}  # ended run ID → its end time (ms): not read again
        self._exp_ids: list[str] = []
        self._exp_at = -EXPERIMENTS_EVERY
        self._since: int | None = None  # ms: runs that ended after this are read (None: first poll)
        self._more = False
        self._down = False
        self._said_waiting = False
        self._run_id: str | None = None  # --run, resolved

    # -- the Source protocol -----------------------------------------------------------------------
    def poll(self) -> list[Any]:
        """The scalars logged since the last poll, run by run in step order; ``[]`` while the server is away."""
        try:
            out = self._poll()
        except self._down_errors as err:
            if isinstance(err, MlflowSourceError):
                raise
            if not self._down:
                self._down = True
                logger.warning("mlflow: %s: %s; trying again every poll", self.uri, _one_line(err))
            return []
        if self._down:
            self._down = False
            logger.warning("mlflow: %s answers again; resuming", self.uri)
        return out

    @property
    def down(self) -> bool:
        """The last poll found the server away."""
        return self._down

    def take_ended(self) -> list[str]:
        ended, self._ended = self._ended, []
        return ended

    def backlog(self) -> bool:
        return self._more

    # -- which runs --------------------------------------------------------------------------------
    def _experiments(self) -> list[str]:
        now = time.monotonic()
        if self._exp_ids and now - self._exp_at < EXPERIMENTS_EVERY:
            return self._exp_ids
        if self.experiment is not None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                if not self._said_waiting:
                    self._said_waiting = True
                    logger.info("mlflow: waiting for experiment %r to appear on %s", self.experiment, self.uri)
                return []
            ids = [exp.experiment_id]
        else:
            ids, token = [], None
            while True:
                page = self.client.search_experiments(max_results=PAGE, page_token=token)
                ids.extend(e.experiment_id for e in page)
                token = page.token
                if not token:
                    break
        self._exp_ids, self._exp_at = ids, now
        return ids

    def _search(self, ids: list[str], filter_string: str) -> list[Any]:
        runs, token = [], None
        while True:
            page = self.client.search_runs(ids, filter_string=filter_string, max_results=PAGE, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _one_run(self) -> list[Any]:
        assert self.run is not None
        if self._run_id is not None:
            return [] if self._run_id in self._gone else [self.client.get_run(self._run_id)]
        if _RUN_ID.fullmatch(self.run):
            from mlflow.exceptions import MlflowException

            try:
                found = [self.client.get_run(self.run)]
                self._run_id = self.run
                return found
            except MlflowException as err:
                if getattr(err, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
        ids = self._experiments()
        name = self.run.replace("'", "\\'")
        found = self._search(ids, f"attributes.run_name = '{name}'") if ids else []
        if not found:
            raise MlflowSourceError(f"mlflow: no run named or with ID {self.run!r} on {self.uri}"
                                    + (f" in experiment {self.experiment!r}" if self.experiment else ""))
        newest = max(found, key=lambda r: r.info.start_time or 0)
        self._run_id = newest.info.run_id
        return [newest]

    def _poll(self) -> list[Scalar]:
        started = int(time.time() * 1000)
        if self.run is not None:
            runs = self._one_run()
        else:
            ids = self._experiments()
            if not ids:
                return []
            if self.include_finished and self._since is None:
                runs = self._search(ids, "")
            else:
                runs = self._search(ids, "attributes.status = 'RUNNING'")
                since = started if self._since is None else self._since
                runs += self._search(ids, f"attributes.end_time >= {since}")
        self._since = started - END_SLACK_MS
        if self.run is None:
            for rid in [r for r, end in self._gone.items() if end < self._since]:
                del self._gone[rid]  # older than the search's window: it cannot come back
        self._more = False
        out: list[Scalar] = []
        live = set()
        for run in runs:
            rid = run.info.run_id
            if rid in self._gone or rid in live:
                continue
            live.add(rid)
            out.extend(self._read(run))
            if run.info.status != "RUNNING" and not self._runs[rid].more:
                self._end(rid, run.info.end_time or started)
        for rid in [r for r in self._runs if r not in live]:  # ended (or deleted) out of the searches' sight
            run = self.client.get_run(rid)
            out.extend(self._read(run))
            if not self._runs[rid].more:
                self._end(rid, run.info.end_time or started)
        return out

    # -- one run -----------------------------------------------------------------------------------
    def _name(self, run: Any) -> str:
        rid = run.info.run_id
        name = sanitize(run.info.run_name or rid[:8])
        if self._names.setdefault(name, rid) != rid:
            name = sanitize(f"{name}.{rid[:8]}")
            self._names[name] = rid
        return name

    def _end(self, rid: str, end_ms: int) -> None:
        state = self._runs.pop(rid, None)
        self._gone[rid] = end_ms
        if state is not None:
            self._names.pop(state.name, None)
            self._ended.append(state.name)

    def _read(self, run: Any) -> list[Scalar]:
        rid = run.info.run_id
        state = self._runs.get(rid)
        if state is None:
            state = self._runs[rid] = _Run(self._name(run))
            logger.info("mlflow: following run %s (%s) as %s", run.info.run_name, rid, state.name)
        latest = {m.key: (m.step, m.timestamp) for m in run.data.to_proto().metrics}
        moved = [k for k, at in latest.items() if state.latest.get(k) != at]
        rows: dict[str, list[Any]] = {}
        full: list[str] = []
        for key in moved:
            page = self._history(rid, key, state.offset.get(key, 0))
            rows[key] = page
            if len(page) >= PAGE:
                full.append(key)
        # A key with more rows than a page bounds the others: steps beyond the shortest full page wait for the
        # next poll, so a step is never sent with some of its keys still unread.
        cut = min((rows[k][-1].step for k in full), default=None)
        out: list[Scalar] = []
        for key, page in rows.items():
            taken = page if cut is None else _prefix_to(page, cut)
            state.offset[key] = state.offset.get(key, 0) + len(taken)
            if len(taken) == len(page) and key not in full:
                state.latest[key] = latest[key]
            out.extend(Scalar(state.name, int(m.step), m.timestamp / 1000.0, key, float(m.value)) for m in taken)
        state.more = bool(full)
        self._more = self._more or bool(full)
        out.sort(key=lambda s: (s.step, s.wall_time))
        return out

    def _history(self, rid: str, key: str, offset: int) -> list[Any]:
        from mlflow.utils.search_utils import SearchUtils

        # The server's page token is an offset; ours resumes where the last read stopped.
        token = SearchUtils.create_page_token(offset).decode() if offset else None
        return list(self._store.get_metric_history(rid, key, max_results=PAGE, page_token=token))


def _prefix_to(rows: list[Any], cut: int) -> list[Any]:
    n = 0
    while n < len(rows) and rows[n].step <= cut:
        n += 1
    return rows[:n]
