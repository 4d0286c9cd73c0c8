"""The local process pool: phases share their workers; a death costs only its task."""

from __future__ import annotations

import os
import time

from forensic.executors import ProcessPoolExecutor, TaskFailed


def _pid(_task) -> int:
    time.sleep(0.02)  # long enough that both workers take tasks
    return os.getpid()


def _die_on_minus_one(task: int) -> int:
    if task == -1:
        os._exit(70)
    return task * 2


def test_maps_share_the_pool_workers():
    ex = ProcessPoolExecutor(2)
    try:
        first = {pid for _t, pid in ex.map_unordered(_pid, range(6))}
        second = {pid for _t, pid in ex.map_unordered(_pid, range(6))}
    finally:
        ex.close()
    assert os.getpid() not in first
    assert second <= first  # no new processes were forked for the second map


def test_map_after_a_worker_died_gets_a_sound_pool():
    ex = ProcessPoolExecutor(2)
    try:
        first = dict(ex.map_unordered(_die_on_minus_one, [1, -1, 2]))
        second = dict(ex.map_unordered(_die_on_minus_one, [3, 4]))
    finally:
        ex.close()
    assert isinstance(first[-1], TaskFailed) and first[1] == 2 and first[2] == 4
    assert second == {3: 6, 4: 8}


class _PoolThatBreaksOnSecondSubmit:
    """A pool whose worker dies while tasks are still being submitted (a
    warm pool starts on the first task at once)."""

    _broken = False

    def __init__(self):
        self.submits = 0

    def submit(self, fn, task):
        import concurrent.futures as cf
        from concurrent.futures.process import BrokenProcessPool
        self.submits += 1
        if self.submits == 2:
            raise BrokenProcessPool("a worker died")
        done = cf.Future()
        done.set_result(fn(task))
        return done

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_pool_breaking_during_submission_runs_the_rest_on_a_new_pool():
    ex = ProcessPoolExecutor(2)
    ex._pool = _PoolThatBreaksOnSecondSubmit()
    try:
        results = dict(ex.map_unordered(_die_on_minus_one, [1, 2, 3]))
    finally:
        ex.close()
    assert results == {1: 2, 2: 4, 3: 6}


def test_released_workers_exit_while_the_caller_goes_on():
    """release(): the workers exit during the final merge, not after it; a
    map after release gets a new pool, and close() waits for all of them."""
    ex = ProcessPoolExecutor(2)
    try:
        pids = {pid for _t, pid in ex.map_unordered(_pid, range(4))}
        ex.release()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.01)
        assert not any(_alive(p) for p in pids)
        again = {pid for _t, pid in ex.map_unordered(_pid, range(2))}
        assert again and not again & pids
    finally:
        ex.close()
    assert not any(_alive(p) for p in again)


def _alive(pid: int) -> bool:
    """Running (a zombie not yet reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone (between the open and the read: ProcessLookupError)
        return False
