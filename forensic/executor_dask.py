"""The per-input work on Dask distributed (``timeline --scheduler``).

One more :class:`forensic.executors.Executor`: it submits each task (a
picklable ``PrescanTask`` / ``ParseTask``) as a Dask future and yields
``(task, result)`` as futures complete, so the engine's phases, its progress
("parsed" per completed future) and its merge are the same as with the local
process pool.

- ``--scheduler tcp://HOST:PORT``: a running scheduler (``dask scheduler``)
  with workers (``dask worker``) that run this same mssql-forensic version and
  can read the evidence paths and the scratch folder under the same names
  (shared storage).  Both are checked before anything is read.
- ``--scheduler local``: an in-process ``LocalCluster`` of ``--workers``
  single-threaded worker processes.

Failures: a worker that dies while running a task is noticed by the
scheduler, which runs the task again on another worker.  The engine merges
only the run files named in a task's *result*, and a dead attempt returns
none, so its partial runs are never merged (they are removed with the
scratch folder).  A task whose workers die ``allowed-failures + 1`` times is
given up by the scheduler (``KilledWorker``) and reported as a
:class:`~forensic.executors.TaskFailed` result: the input is listed as failed
in the manifest and the run goes on.  The LocalCluster is built with
``allowed-failures = 1`` (two deaths, as the local pool); for an external
scheduler set ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1`` when
starting it (Dask's default is 3).

Dask is an optional extra: ``pip install 'mssql-forensic[distributed]'``.
This module imports it only when an executor is built.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from forensic import __version__
from forensic.executors import MAX_ATTEMPTS, TEST_KILL_ENV, TEST_KILL_ONCE_ENV, TaskFailed

INSTALL_HINT = "python -m pip install 'mssql-forensic[distributed]' (or: python -m pip install 'dask[distributed]')"
CONNECT_TIMEOUT = "20s"

# Test-only fault injection (tests/test_distributed.py): a task whose display
# path contains NEEDLE, run while MARKER does not exist yet, creates MARKER
# holding the worker's pid and sleeps SECONDS (so that the test can kill that
# worker mid-input).  Value: "NEEDLE|MARKER|SECONDS".  Never set in use.
TEST_STALL_ENV = "MSSQL_FORENSIC_TEST_STALL_TASK"


class ExecutorError(Exception):
    """The cluster cannot be used (no Dask, no scheduler, paths not shared)."""


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _worker_identity() -> dict[str, Any]:
    import socket
    import sys
    return {"version": __version__, "python": sys.version.split()[0], "host": socket.gethostname(),
            "pid": os.getpid()}


def _visible(paths: list[str]) -> list[str]:
    """The paths this worker cannot see."""
    return [p for p in paths if not os.path.exists(p)]


class DaskExecutor:
    """Runs tasks as Dask futures (see the module docstring)."""

    def __init__(self, scheduler: str, workers: int = 1):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError(f"--scheduler needs Dask distributed: {INSTALL_HINT}") from None
        self.scheduler = scheduler
        self._cluster = None
        self.client = None
        try:
            if scheduler == "local":
                # One task at a time per single-threaded worker, so that a
                # worker's death suspects only the input it was running.
                with dask.config.set({"distributed.scheduler.allowed-failures": MAX_ATTEMPTS - 1,
                                      "distributed.scheduler.worker-saturation": 1.0,
                                      "distributed.worker.daemon": False}):
                    self._cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1,
                                                 processes=True, dashboard_address=None,
                                                 silence_logs=40)  # logging.ERROR
                self.client = Client(self._cluster, set_as_default=False)
            else:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
            if scheduler != "local":
                self._wait_for_workers()
            self._check_versions()
        except ExecutorError:
            self.close()
            raise
        except (OSError, TimeoutError, ValueError) as exc:
            self.close()
            raise ExecutorError(f"cannot use the Dask scheduler {scheduler!r}: {exc}") from None

    # -- checks before any work ------------------------------------------------
    def _wait_for_workers(self, timeout: float = 30.0) -> None:
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError):
            raise ExecutorError(f"the Dask scheduler {self.scheduler!r} has no workers "
                                f"(waited {timeout:.0f} s): start some with `dask worker {self.scheduler}`") from None

    def _check_versions(self) -> None:
        found = self.client.run(_worker_identity)
        wrong = {addr: info for addr, info in found.items() if info["version"] != __version__}
        if wrong:
            addr, info = next(iter(wrong.items()))
            raise ExecutorError(f"{len(wrong)} Dask worker(s) run mssql-forensic {info['version']}, "
                                f"this is {__version__} (e.g. {addr}): install the same version everywhere")

    def workers(self) -> dict[str, dict[str, Any]]:
        return self.client.run(_worker_identity)

    def require_visible(self, paths: Iterable[str]) -> None:
        """Every worker must see every path (evidence and scratch on shared storage)."""
        paths = [os.path.abspath(p) for p in paths]
        missing = {addr: gone for addr, gone in self.client.run(_visible, paths).items() if gone}
        if missing:
            addr, gone = next(iter(missing.items()))
            raise ExecutorError(
                f"{len(missing)} Dask worker(s) cannot see {gone[0]!r} (e.g. {addr}): evidence paths and the "
                "scratch folder (beside OUT, or --scratch) must be on storage every worker reads under the "
                "same name")

    # -- the map ------------------------------------------------------------------
    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        from concurrent.futures import CancelledError

        from distributed import KilledWorker, as_completed

        fn = _test_wrappers(fn)
        pending = list(tasks)
        if not pending:
            return
        prefix = f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex[:12]}"
        futures = {}
        for i, task in enumerate(pending):
            # The engine orders tasks (big inputs first): keep that order.
            fut = self.client.submit(fn, task, key=f"{prefix}-{i}", pure=False, priority=len(pending) - i)
            futures[fut.key] = (fut, i)
        try:
            for fut in as_completed([f for f, _ in futures.values()], loop=self.client.loop):
                _f, i = futures.pop(fut.key)
                # result() waits when the future went back to pending: a result
                # held by a worker that died before it was fetched is computed
                # again (only that attempt's run files are then used).
                try:
                    result = fut.result()
                except KilledWorker:
                    result = TaskFailed("Dask worker process died while parsing this input "
                                        "(each attempt on another worker); given up")
                except CancelledError:
                    raise ExecutorError("lost the Dask scheduler (task cancelled): the run is incomplete") from None
                except Exception as exc:  # noqa: BLE001 - reported per task
                    result = TaskFailed(f"{type(exc).__name__}: {exc}")
                fut.release()
                yield pending[i], result
        except BaseException:
            # Ctrl-C or the consumer stopped: do not leave work on the cluster.
            self.client.cancel([f for f, _ in futures.values()], force=True)
            raise

    def close(self) -> None:
        client, cluster = self.client, self._cluster
        self.client = self._cluster = None
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        if cluster is not None:
            try:
                cluster.close(timeout=10)
            except Exception:  # noqa: BLE001
                pass


def _test_wrappers(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Test-only fault injection (see TEST_STALL_ENV and executors.TEST_KILL_ENV)."""
    if os.environ.get(TEST_STALL_ENV):
        needle, marker, seconds = os.environ[TEST_STALL_ENV].split("|")
        fn = _TestStall(fn, needle, marker, float(seconds))
    if os.environ.get(TEST_KILL_ENV):
        from forensic.executors import _TestKill
        fn = _TestKill(fn, os.environ[TEST_KILL_ENV], os.environ.get(TEST_KILL_ONCE_ENV))
    return fn


class _TestStall:
    def __init__(self, fn, needle: str, marker: str, seconds: float):
        self.fn, self.needle, self.marker, self.seconds = fn, needle, marker, seconds
        self.__name__ = getattr(fn, "__name__", "task")

    def __call__(self, task):
        if type(task).__name__ == "ParseTask" and self.needle in getattr(task, "display_path", ""):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                result = self.fn(task)  # its runs are written: a death now leaves them behind
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                time.sleep(self.seconds)
                return result
        return self.fn(task)
