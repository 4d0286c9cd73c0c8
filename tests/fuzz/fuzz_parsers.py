"""Long fuzz runs over every parser (not part of the default test run).

    python tests/fuzz/fuzz_parsers.py --seconds 600                 # mutation fuzzing, all parsers
    python tests/fuzz/fuzz_parsers.py --mode grammar --seconds 600  # ERRORLOG/Agent grammar (hypothesis)
    python tests/fuzz/fuzz_parsers.py --mode atheris -- -max_total_time=600   # coverage-guided
    python tests/fuzz/fuzz_parsers.py --mode engine --seconds 600   # whole timeline runs

``mutate`` (default) takes the real samples (bundled evidence, test fixtures,
public EVTX/trace samples) and applies random damage: truncation, bit flips,
overwritten, inserted, deleted, duplicated and zeroed ranges.  ``grammar``
runs the suite's hypothesis strategies with a large budget.  ``atheris``
(``pip install atheris``) is coverage-guided libFuzzer over the same seeds.
``engine`` puts one to four damaged samples in a folder and runs the whole
``timeline`` (in-process, one worker) on it: no input may end with an error
(a parser or engine exception), record accounting must reconcile, the rows
written must equal the events counted, and findings must build.

Every case goes through :func:`fuzz.targets.check_input` (every parser, EVTX
with both engines).  A failing input is written to ``--out`` (default
``tests/fuzz/crashes/``) with the violation; re-run one with
``--replay FILE``.  Runs use ``--jobs`` processes (default: CPUs) and print
cases, time, peak memory and findings at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import random
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ -> "fuzz" package
sys.path.insert(0, str(HERE.parents[1]))  # repo root

from fuzz.targets import Violation, check_input, mutate, seeds  # noqa: E402

CASE_TIME_LIMIT = 60.0  # seconds per parser per case before it counts as a hang
HANG_SECONDS = 300  # a case (all parsers) still running after this is reported as a hang


class _Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Hang


def _watchdog() -> None:
    import signal
    signal.signal(signal.SIGALRM, _alarm)
MEMORY_LIMIT_MB = 2048  # peak RSS of a fuzz process above this is a finding


def _save(out: Path, data: bytes, message: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()[:16]
    path = out / f"crash-{name}.bin"
    path.write_bytes(data)
    (out / f"crash-{name}.txt").write_text(message + "\n", encoding="utf-8")
    return path


def signal_alarm(seconds: int) -> None:
    import signal
    signal.alarm(seconds)


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _mutate_worker(args) -> tuple[int, list[tuple[str, str]], int]:
    worker, seconds, out, seed = args
    corpus = seeds()
    names = sorted(corpus)
    rng = random.Random(seed * 1000 + worker)
    deadline = time.monotonic() + seconds
    cases, found = 0, []
    _watchdog()
    while time.monotonic() < deadline:
        name = rng.choice(names)
        data = mutate(corpus[name], rng)
        if rng.random() < 0.1:  # sometimes damage twice: compound corruption
            data = mutate(data, rng)
        signal_alarm(HANG_SECONDS)
        try:
            check_input(data, name=name.rsplit("/", 1)[-1], time_limit=CASE_TIME_LIMIT)
        except Violation as exc:
            found.append((str(_save(out, data, f"seed {name}: {exc}")), str(exc)[:300]))
        except _Hang:
            found.append((str(_save(out, data, f"seed {name}: hang > {HANG_SECONDS}s")), "hang"))
        finally:
            signal_alarm(0)
        cases += 1
        if cases % 2000 == 0:
            print(f"[worker {worker}] {cases} cases, {len(found)} finding(s)", flush=True)
        if _rss_mb() > MEMORY_LIMIT_MB:
            found.append((str(_save(out, data, f"seed {name}: peak RSS {_rss_mb()} MB")), "memory"))
            break
    return cases, found, _rss_mb()


def _run_pool(worker, what: str, seconds: float, jobs: int, out: Path, seed: int) -> int:
    """Run ``worker`` in ``jobs`` processes and report (cases, findings, peak RSS)."""
    started = time.monotonic()
    with mp.get_context("spawn").Pool(jobs) as pool:
        results = pool.map(worker, [(w, seconds, out, seed) for w in range(jobs)])
    cases = sum(r[0] for r in results)
    found = [f for r in results for f in r[1]]
    print(f"{what.format(cases=cases)} in {time.monotonic() - started:.0f}s with {jobs} jobs; "
          f"peak RSS {max(r[2] for r in results)} MB; {len(found)} finding(s)")
    for path, message in found:
        print(f"  {path}: {message}")
    return 1 if found else 0


def run_mutate(seconds: float, jobs: int, out: Path, seed: int) -> int:
    return _run_pool(_mutate_worker, "mutate: {cases} cases x every parser", seconds, jobs, out, seed)


def run_grammar(seconds: float, out: Path) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from fuzz.textgen import agent_lines, encoded, errorlog_lines

    cases = [0]
    found: list[tuple[str, str]] = []
    deadline = time.monotonic() + seconds

    @settings(max_examples=10**9, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(encoded(errorlog_lines()), encoded(agent_lines())))
    def case(data):
        if time.monotonic() > deadline:
            raise _Done
        cases[0] += 1
        try:
            check_input(data, only=["errorlog", "sqlagent", "master_export"], time_limit=CASE_TIME_LIMIT)
        except Violation as exc:
            found.append((str(_save(out, data, str(exc))), str(exc)[:300]))

    started = time.monotonic()
    try:
        case()
    except _Done:
        pass
    print(f"grammar: {cases[0]} cases in {time.monotonic() - started:.0f}s; peak RSS {_rss_mb()} MB; "
          f"{len(found)} finding(s)")
    for path, message in found:
        print(f"  {path}: {message}")
    return 1 if found else 0


class _Done(Exception):
    pass


def _engine_worker(args) -> tuple[int, list[tuple[str, str]], int]:
    import json
    import shutil
    import tempfile

    from forensic.findings import build_findings
    from forensic.timeline import RunOptions, run_timeline

    worker, seconds, out, seed = args
    corpus = seeds()
    names = sorted(corpus)
    rng = random.Random(seed * 1000 + worker)
    deadline = time.monotonic() + seconds
    cases, found = 0, []
    _watchdog()
    while time.monotonic() < deadline:
        tmp = Path(tempfile.mkdtemp(prefix="fuzz-engine-"))
        try:
            ev = tmp / "ev"
            picked = rng.sample(names, rng.randint(1, 4))
            for i, name in enumerate(picked):
                folder = ev / f"{i}"
                folder.mkdir(parents=True)
                (folder / name.rsplit("/", 1)[-1]).write_bytes(mutate(corpus[name], rng))
            output = tmp / "out" / "t.jsonl"
            output.parent.mkdir()
            problems = []
            signal_alarm(HANG_SECONDS)
            try:
                result = run_timeline(RunOptions(paths=[str(ev)], output=str(output), fmt="jsonl", workers=1,
                                                 parser_options={"evtx_engine": rng.choice(["rust", "python"])},
                                                 command_line=["fuzz"]))
                m = result.manifest
                for item in m["inputs"]:
                    if item["errors"]:
                        problems.append(f"{item['path']}: {item['errors'][0][:400]}")
                    if not item["records"]["reconciled"]:
                        problems.append(f"{item['path']}: records {item['records']}")
                if m["totals"]["events"] != result.rows:
                    problems.append(f"{m['totals']['events']} events but {result.rows} rows")
                build_findings(str(output))
            except _Hang:
                problems.append(f"hang > {HANG_SECONDS}s")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"run raised {type(exc).__name__}: {exc}")
            finally:
                signal_alarm(0)
            if problems:
                keep = out / f"engine-{hashlib.sha256(repr(problems).encode()).hexdigest()[:12]}"
                if not keep.exists():
                    shutil.copytree(ev, keep / "ev")
                    (keep / "problems.json").write_text(json.dumps(problems, indent=1), encoding="utf-8")
                found.append((str(keep), problems[0][:300]))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        cases += 1
        if cases % 200 == 0:
            print(f"[worker {worker}] {cases} runs, {len(found)} finding(s)", flush=True)
        if _rss_mb() > MEMORY_LIMIT_MB:
            found.append(("-", f"peak RSS {_rss_mb()} MB"))
            break
    return cases, found, _rss_mb()


def run_engine(seconds: float, jobs: int, out: Path, seed: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    return _run_pool(_engine_worker, "engine: {cases} timeline runs", seconds, jobs, out, seed)


def run_atheris(argv: list[str], out: Path) -> int:
    import atheris

    with atheris.instrument_imports():
        import parsers  # noqa: F401
        import parsers.default_trace  # noqa: F401
        import parsers.errorlog  # noqa: F401
        import parsers.eventlog  # noqa: F401
        import parsers.master_export  # noqa: F401
        import parsers.sqlagent  # noqa: F401
        import parsers.textlog  # noqa: F401

    corpus = out.parent / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for data in seeds().values():
        (corpus / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data[:1 << 16])

    def one(data: bytes) -> None:
        check_input(data, time_limit=CASE_TIME_LIMIT)  # a Violation is a crash for libFuzzer

    atheris.Setup([sys.argv[0], f"-artifact_prefix={out}/", f"-rss_limit_mb={MEMORY_LIMIT_MB}",
                   "-timeout=120", "-max_len=262144", *argv, str(corpus)], one)
    out.mkdir(parents=True, exist_ok=True)
    atheris.Fuzz()
    return 0


def replay(path: Path) -> int:
    data = path.read_bytes()
    try:
        check_input(data, time_limit=CASE_TIME_LIMIT)
    except Violation as exc:
        print(f"{path}: {exc}")
        return 1
    print(f"{path}: ok")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("mutate", "grammar", "atheris", "engine"), default="mutate")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out", type=Path, default=HERE / "crashes")
    ap.add_argument("--replay", type=Path)
    args, rest = ap.parse_known_args()
    if args.replay:
        return replay(args.replay)
    if args.mode == "mutate":
        print(f"seed {args.seed}")
        return run_mutate(args.seconds, args.jobs, args.out, args.seed)
    if args.mode == "grammar":
        return run_grammar(args.seconds, args.out)
    if args.mode == "engine":
        print(f"seed {args.seed}")
        return run_engine(args.seconds, args.jobs, args.out, args.seed)
    return run_atheris([a for a in rest if a != "--"], args.out)


if __name__ == "__main__":
    sys.exit(main())
