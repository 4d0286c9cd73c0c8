"""Executors: where the per-input work runs.

An executor maps a picklable function over picklable tasks and yields
``(task, result)`` as tasks finish, in any order.  The pipeline does not care
which one runs it; a distributed engine is one more class with this shape.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

MAX_ATTEMPTS = 2


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

    When a worker dies, the pool is rebuilt and the unfinished tasks are
    submitted again; a task that was running at two deaths is reported as
    failed (its result is a :class:`TaskFailed`) and the run goes on.
    """

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers)
        return self._pool

    def map_unordered(self, fn, tasks):
        pending = list(tasks)
        attempts = [0] * len(pending)
        todo = set(range(len(pending)))
        while todo:
            pool = self._new_pool()
            futures = {}
            for i in sorted(todo):
                attempts[i] += 1
                futures[pool.submit(fn, pending[i])] = i
            broken = False
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if attempts[i] >= MAX_ATTEMPTS:
                        todo.discard(i)
                        yield pending[i], TaskFailed("worker process died while parsing this input (twice)")
                    continue
                except Exception as exc:  # noqa: BLE001 - reported per task
                    todo.discard(i)
                    yield pending[i], TaskFailed(f"{type(exc).__name__}: {exc}")
                    continue
                todo.discard(i)
                yield pending[i], result
            if not broken:
                break

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def make_executor(workers: int) -> Executor:
    return SerialExecutor() if workers <= 1 else ProcessPoolExecutor(workers)
