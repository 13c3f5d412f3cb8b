"""IonPlan on a Dask cluster: connecting, a local cluster, robust scenarios as tasks.

``dask.distributed`` is imported here only, inside functions, so that the rest of planning
imports without it (the binary may leave it out): :func:`require_distributed` turns its absence
into one clear :class:`planning.errors.IonPlanError`.

- :func:`local_cluster`: worker processes on this machine, one per core, no server to set up;
- :func:`connect`: a client of an existing ``dask scheduler`` (``tcp://HOST:PORT``);
- :func:`dask_scenario_runner`: a :data:`planning.robust.ScenarioRunner` whose scenarios are
  tasks on the cluster; inside a task (a batch job), :func:`in_worker_runner` does the same
  from the worker, seceding from its thread pool while it waits. What a scenario task warns of
  comes back with its doses and is logged where the runner waits (in a batch job: the job's
  thread, which collects it with the job's name, :mod:`planning.log_capture`).

Tasks are pure functions of their arguments (paths and numbers): when a worker dies, the
scheduler runs its tasks again elsewhere and the result is the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from planning.errors import IonPlanError, PlanningError
from planning.progress import CancelToken, ProgressCallback, report

log = logging.getLogger(__name__)


def require_distributed() -> Any:
    """The ``distributed`` module, or an IonPlanError saying how to get it."""
    try:
        import distributed
    except ImportError:
        raise IonPlanError(
            "Dask distributed is not part of this installation (the desktop binary leaves it "
            "out); to run batches and cluster jobs, install IonPlan from its source with pip "
            "(pip install . in a clone of the repository, which brings dask[distributed])"
            ) from None
    return distributed


def quiet_logs(level: int = logging.WARNING) -> None:
    """Keep Dask's own INFO messages (scheduler, workers, connections) off the terminal.

    ``distributed`` sets its loggers to INFO when it is first imported: it is imported here
    first (where installed), else a level set before that import was undone by it."""
    with contextlib.suppress(ImportError):
        import distributed  # noqa: F401  (for its logging set-up, overridden below)
    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(level)


def connect(address: str, *, timeout_s: float = 30.0) -> Any:
    """A client of the Dask scheduler at ``address`` (e.g. ``tcp://10.0.0.5:8786``).

    Raises
    ------
    IonPlanError
        No scheduler answers there within ``timeout_s``.
    """
    distributed = require_distributed()
    try:
        return distributed.Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise IonPlanError(f"{address}: cannot reach a Dask scheduler there ({exc}); start one "
                           "with 'dask scheduler' and workers with 'dask worker ADDRESS'") from None


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None) -> Iterator[Any]:
    """A client of a cluster of worker processes on this machine (one per core by default,
    one task at a time each), closed on exit. No dashboard, no fixed ports: the scheduler
    always serves a few HTTP routes (health, metrics), on port 8787 unless told otherwise,
    which warned of a port in use beside any other Dask cluster; here on a free port of the
    loopback interface.

    Each worker's dose engine gets its share of the cores (``IONPLAN_THREADS``, see
    :data:`planning.engine.dose_engine.THREADS_ENV`): with one worker per core, one thread
    each, so that the workers never run more threads than there are cores.
    """
    distributed = require_distributed()
    cores = os.cpu_count() or 1
    n = int(n_workers or cores)
    if n < 1:
        raise IonPlanError(f"a local cluster needs at least one worker, got {n}")
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       env={"IONPLAN_THREADS": str(max(1, cores // n))},
                                       dashboard_address="127.0.0.1:0",
                                       scheduler_kwargs={"dashboard": False},
                                       silence_logs=logging.WARNING)
    try:
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        with _kill_at_close_unsaid():
            cluster.close()


#: Dask's nanny, closing a worker process that has not exited within its timeout (a loaded
#: machine), says so at WARNING before it kills it. The cluster is being closed: every task is
#: done, and the line read as a problem of the user's run under ``ionplan batch`` (CI).
_KILL_AT_CLOSE = "Worker process still alive after"


class _DropKillAtClose(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_KILL_AT_CLOSE)


@contextlib.contextmanager
def _kill_at_close_unsaid() -> Iterator[None]:
    """While the block closes a local cluster, drop the nanny's :data:`_KILL_AT_CLOSE` line."""
    logger, drop = logging.getLogger("distributed.nanny"), _DropKillAtClose()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _run_scenarios(client: Any, factory: Callable[[], Any], scenarios: Sequence[Any],
                   progress: ProgressCallback | None, cancel: CancelToken | None
                   ) -> Iterator[Any]:
    """Submit the inputs task and one task per setup position now (its scenarios share the
    traced beams); yield the scenarios' results as their tasks finish."""
    distributed = require_distributed()
    from planning.robust import by_position

    if not scenarios:
        return iter(())
    inputs = client.submit(_inputs_without_repeated_warnings, factory, pure=False)
    futures = [client.submit(_position_doses_and_warnings, inputs, group, pure=False)
               for group in by_position(scenarios)]
    n = len(scenarios)

    def results() -> Iterator[Any]:
        logged: set[str] = set()
        try:
            k = 0
            for fut in distributed.as_completed(futures):
                if cancel is not None and cancel.cancelled:
                    client.cancel(futures)
                    cancel.raise_if_cancelled("robust evaluation")
                try:
                    group, warned = fut.result()
                except IonPlanError:
                    raise
                except Exception as exc:  # a worker's error arrives as its own type
                    raise PlanningError(f"a robust scenario failed on the cluster: "
                                        f"{type(exc).__name__}: {exc}") from None
                for message in warned:  # once, though each setup position may warn of it
                    if message not in logged:
                        logged.add(message)
                        log.warning("%s", message)
                for done in group:
                    k += 1
                    report(progress, k / n, f"scenario {done.scenario.name}")
                    yield done
        finally:
            client.cancel([f for f in futures if not f.done()])
            inputs.release()

    return results()


def _inputs_without_repeated_warnings(factory: Callable[[], Any]) -> Any:
    """The scenarios' inputs, made on a worker from the files that the caller has loaded
    already (:func:`planning.robust.robust_files`): what loading them warns of again (a
    damaged file, a value that pydicom reads as nonconforming) was reported there, in a batch
    with the job's name, and the worker would print it once more without it."""
    from planning.log_capture import collected_warnings

    with collected_warnings():
        return factory()


def _position_doses_and_warnings(inputs: Any, group: Sequence[Any]
                                 ) -> tuple[list[Any], list[str]]:
    """:func:`planning.robust.position_doses` as a task: the scenarios' doses, and what the
    task warned of (:func:`planning.log_capture.collected_warnings`), which the worker would
    print without the job's name, for the runner to log where it waits."""
    from planning.log_capture import collected_warnings
    from planning.robust import position_doses

    with collected_warnings() as warned:
        doses = position_doses(inputs, group)
    return doses, list(warned)


def dask_scenario_runner(client: Any) -> Callable[..., Iterator[Any]]:
    """A :data:`planning.robust.ScenarioRunner` running each scenario as a task of ``client``'s
    cluster (the scenarios' inputs are one more task, made on a worker)."""
    def run(factory: Callable[[], Any], scenarios: Sequence[Any],
            progress: ProgressCallback | None, cancel: CancelToken | None) -> Iterator[Any]:
        return _run_scenarios(client, factory, scenarios, progress, cancel)

    return run


def running_in_worker() -> bool:
    """Whether this code runs inside a Dask worker's task."""
    try:
        distributed = require_distributed()
        distributed.get_worker()
    except (IonPlanError, ValueError):
        return False
    return True


@contextlib.contextmanager
def in_worker_runner() -> Iterator[Callable[..., Iterator[Any]]]:
    """Inside a task: a scenario runner on the task's own cluster. The task secedes from
    its worker's thread pool while in the block, so its scenario tasks can run there."""
    distributed = require_distributed()
    with distributed.worker_client() as client:
        yield dask_scenario_runner(client)
