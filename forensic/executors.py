"""Executors: where the per-input work runs.

An executor maps a picklable function over picklable tasks and yields
``(task, result)`` as tasks finish, in any order.  The pipeline does not care
which one runs it; a distributed engine is one more class with this shape.

Interruption: pool workers ignore SIGINT (Ctrl-C reaches the whole process
group); the main process gets the KeyboardInterrupt, terminates the workers
at once instead of waiting for their current input, and re-raises, so the
caller can remove its partial output.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Protocol

MAX_ATTEMPTS = 2

# Test-only fault injection (tests/test_robustness_engine.py): a pool worker
# that is given an input whose display path contains the value of this
# variable dies with os._exit, as if killed.  With _ONCE set to a file path,
# only the first such worker dies (it creates the file).  Never set in use.
TEST_KILL_ENV = "MSSQL_FORENSIC_TEST_KILL_WORKER"
TEST_KILL_ONCE_ENV = "MSSQL_FORENSIC_TEST_KILL_WORKER_ONCE"


class TaskFailed(Exception):
    """A task could not be run (its worker died twice)."""


class Executor(Protocol):
    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Runs tasks in this process, one after another (``--workers 1``)."""

    def map_unordered(self, fn, tasks):
        for task in tasks:
            yield task, fn(task)

    def close(self) -> None:
        pass


class ProcessPoolExecutor:
    """A local process pool that survives a worker being killed.

    When a worker dies, every unfinished task of the pool fails with it (the
    pool cannot tell which one was running), so the pool is rebuilt and they
    are submitted again.  Tasks caught in two deaths are then run in
    quarantine, each in a process of its own: there a death is the task's
    own and is reported as failed (a :class:`TaskFailed` result), while the
    innocent ones that only shared a pool with it complete.  The run goes on.
    """

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._quarantine: set[cf.ProcessPoolExecutor] = set()
        self._released: list[tuple[cf.ProcessPoolExecutor, threading.Thread]] = []

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, initializer=_worker_init)
        return self._pool

    def _live_pool(self) -> cf.ProcessPoolExecutor:
        """The pool of the previous map if it is sound, else a new one: the
        phases of a run (first pass, parsing) share their workers, which
        saves forking and warming a second set (serial time in a short run)."""
        if self._pool is not None and not getattr(self._pool, "_broken", False):
            return self._pool
        return self._new_pool()

    def map_unordered(self, fn, tasks):
        if os.environ.get(TEST_KILL_ENV):
            fn = _TestKill(fn, os.environ[TEST_KILL_ENV], os.environ.get(TEST_KILL_ONCE_ENV))
        try:
            yield from self._map(fn, tasks)
        except BaseException:
            # Ctrl-C, or the consumer stopped: do not wait for running inputs.
            self.terminate()
            raise

    def _map(self, fn, tasks):
        pending = list(tasks)
        attempts = [0] * len(pending)
        todo = set(range(len(pending)))
        suspects: list[int] = []
        fresh = False
        while todo:
            # After a worker died the pool is broken: start a new one.
            pool = self._new_pool() if fresh else self._live_pool()
            fresh = True
            futures = {}
            broken = False
            with _sigint_deferred():  # the first submit forks the workers
                for i in sorted(todo):
                    try:
                        future = pool.submit(fn, pending[i])
                    except BrokenProcessPool:
                        # A live pool's workers start on the first tasks at
                        # once: one may die while the rest are submitted.
                        # Those not submitted wait for the next pool.
                        broken = True
                        break
                    attempts[i] += 1
                    futures[future] = i
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if attempts[i] >= MAX_ATTEMPTS:
                        todo.discard(i)
                        suspects.append(i)
                    continue
                except Exception as exc:  # noqa: BLE001 - reported per task
                    todo.discard(i)
                    yield pending[i], TaskFailed(f"{type(exc).__name__}: {exc}")
                    continue
                todo.discard(i)
                yield pending[i], result
            if not broken:
                break
        if suspects:
            yield from self._isolated(fn, [pending[i] for i in sorted(suspects)])

    def _isolated(self, fn, tasks):
        """Each task in a single-worker pool of its own, ``workers`` at a time."""
        queue = list(tasks)
        running: dict[cf.Future, tuple[Any, cf.ProcessPoolExecutor]] = {}
        while queue or running:
            while queue and len(running) < self.workers:
                task = queue.pop(0)
                with _sigint_deferred():
                    pool = cf.ProcessPoolExecutor(max_workers=1, initializer=_worker_init)
                    self._quarantine.add(pool)
                    running[pool.submit(fn, task)] = (task, pool)
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                task, pool = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    result = TaskFailed("worker process died while parsing this input "
                                        f"({MAX_ATTEMPTS} times in the pool, then alone)")
                except Exception as exc:  # noqa: BLE001 - reported per task
                    result = TaskFailed(f"{type(exc).__name__}: {exc}")
                pool.shutdown(wait=True)
                self._quarantine.discard(pool)
                yield task, result

    def release(self) -> None:
        """No more maps for now: the workers exit while the caller goes on
        (the final merge), instead of after it; ``close`` waits for them."""
        if self._pool is not None:
            # shutdown(wait=False) would forget the processes: wait on a thread.
            pool, self._pool = self._pool, None
            waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                                      name="pool-shutdown", daemon=True)
            waiter.start()
            self._released.append((pool, waiter))

    def close(self) -> None:
        self.release()
        for _pool, waiter in self._released:
            waiter.join()
        self._released = []

    def terminate(self) -> None:
        """Stop now: kill the workers (their partial work is discarded)."""
        pools = [p for p in (self._pool, *self._quarantine, *(p for p, _w in self._released)) if p is not None]
        self._pool, self._quarantine, self._released = None, set(), []
        for pool in pools:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                try:
                    proc.terminate()
                except (OSError, ValueError):
                    pass
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while worker processes are forked.

    A KeyboardInterrupt raised inside fork's handlers is swallowed ("Exception
    ignored") and can leave the pool half-built; a forked child would also
    die of it before ignoring SIGINT.  Blocked here, the signal is delivered
    right after, at a safe point; the children inherit the block.
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group: only the main process handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _TestKill:
    """Test-only wrapper (see TEST_KILL_ENV): die on one input."""

    def __init__(self, fn, needle: str, once: str | None):
        self.fn, self.needle, self.once = fn, needle, once

    def __call__(self, task):
        if type(task).__name__ == "ParseTask" and self.needle in getattr(task, "display_path", ""):
            if self.once is None:
                os._exit(70)
            try:
                fd = os.open(self.once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(70)
        return self.fn(task)


def make_executor(workers: int, scheduler: str | None = None) -> Executor:
    if scheduler:  # Dask distributed: "local" or tcp://host:port (forensic.executor_dask)
        from forensic.executor_dask import DaskExecutor
        return DaskExecutor(scheduler, workers)
    return SerialExecutor() if workers <= 1 else ProcessPoolExecutor(workers)
