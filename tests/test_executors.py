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
