"""Where a sweep's trials run: in this process (`local`, the default), in a local pool of processes (`processes`)
or on Ray (`ray`: a local instance, or an existing cluster with `ray_address`) — with the same results.json.

A runner turns its config into `TrialSpec(key, config)`s, trains what trials share (victims: content-addressed
checkpoints under the run folder) once in the parent, and calls `run_trials(trials, fn, executor, results)`.
`fn(config, key) -> record` must be a module-level function (workers import it by name) that depends on nothing
but its arguments and on-disk caches safe to share or rebuild, and must not write results.json: only the parent
does, so a lock on the run folder taken by the command covers the workers too. Trials whose record exists are
skipped (resume); finished records are written as they arrive and put in the order of `trials` at the end, so the
file is byte-identical whichever executor ran it (and whichever order trials finished in). Wired: the PADHASH,
DHTA, transfer and CIBA runners; to wire another, make one trial per key, a picklable config per trial, and
replace the loop over keys with one `run_trials` call.

Faults. A worker lost mid-trial (killed, out of memory, node gone) costs that trial only: it is retried up to
`retries` times. An exception raised by a trial is not retried (same seed, same error): the other trials go on, its
traceback goes to its log, and the run ends with a one-line error naming it; run the command again to retry it.
Each trial's output (warnings, tracebacks) goes to RUN/logs/<key>.log, appended per attempt.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Iterator

from padhash.config import from_dict
from padhash.errors import PadhashError

EXECUTORS = ("local", "processes", "ray")
TEST_KILL_ENV = "PADHASH_TEST_KILL_TRIAL"


@dataclass
class ExecutorConfig:
    kind: str = "local"               # local | processes | ray
    workers: int | None = None        # trials at once; None = this machine's cores (ray: the cluster's)
    threads: int | None = None        # torch threads per trial; None = cores // workers (≥ 1); local: leave as is
    ray_address: str | None = None    # join this Ray cluster ("auto", "ray://head:10001"); None = a local instance
    retries: int = 2                  # extra attempts of a trial whose worker was lost

    def validate(self, where: str = "executor") -> None:
        if self.kind not in EXECUTORS:
            raise PadhashError(f"{where}.kind: {self.kind!r} is not one of {', '.join(EXECUTORS)}")
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PadhashError(f"{where}.{name}: must be ≥ 1, got {value}")
        if self.retries < 0:
            raise PadhashError(f"{where}.retries: must be ≥ 0, got {self.retries}")
        if self.ray_address and self.kind != "ray":
            raise PadhashError(f"{where}.ray_address: only with kind ray (got kind {self.kind})")


def executor_config(section: dict[str, Any] | None = None, **overrides: Any) -> ExecutorConfig:
    """The config's `executor:` section with the command line's non-None options on top."""
    data = dict(section or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    cfg = from_dict(ExecutorConfig, data, "executor")
    cfg.validate()
    return cfg


@dataclass(frozen=True)
class TrialSpec:
    key: str          # the record's key in results.json
    config: Any       # everything the trial depends on (picklable)
    # trials of one identity compute the same record (PGD at each noise level of a sweep): the first one runs, the
    # others get its record through run_trials' `relabel`; None = a trial of its own
    identity: str | None = None


def run_trials(trials: list[TrialSpec], fn: Callable[[Any, str], dict], executor: ExecutorConfig, results, *,
               progress: bool = True, gpus_per_trial: float = 0.0,
               relabel: Callable[[dict, TrialSpec], dict] | None = None) -> None:
    """Run the trials without a record in `results` (a ResultsFile) on `executor`, adding each record as it comes;
    raises PadhashError after the others finish when some failed. `gpus_per_trial` is what Ray reserves. A trial
    sharing its identity with an earlier one is not run: it gets `relabel(that trial's record, its spec)`."""
    from tqdm.auto import tqdm

    keys = [t.key for t in trials]
    if len(set(keys)) != len(keys):
        raise ValueError("trial keys must be unique")
    identities = [t.identity for t in trials if t.identity is not None]
    if relabel is None and len(set(identities)) != len(identities):
        raise ValueError("trials sharing an identity need run_trials' `relabel`")
    pending, waiting = _shared_trials(trials, results, relabel)
    log_dir = results.run_dir / "logs"
    left = len(pending) + sum(map(len, waiting.values()))
    bar = tqdm(total=len(trials), initial=len(trials) - left, desc=f"trials ({executor.kind})",
               unit="trial", disable=not progress or not left, dynamic_ncols=True)
    running, failed, retried = set(), {}, 0
    backend = {"local": _local, "processes": _processes, "ray": _ray}[executor.kind]
    try:
        for event, key, value in backend(pending, fn, executor, log_dir, gpus_per_trial):
            if event == "start":
                running.add(key)
            elif event == "retry":
                retried += 1
            else:
                running.discard(key)
                bar.update(1)
                if event == "done":
                    if value.get("key") != key:
                        raise ValueError(f"trial {key!r} returned a record keyed {value.get('key')!r}")
                    results.add(value)
                    for alias in waiting.pop(key, []):
                        results.add(_relabelled(relabel, value, alias))
                        bar.update(1)
                else:
                    failed[key] = value
            bar.set_postfix_str(f"running {len(running)}, failed {len(failed)}"
                                + (f", retried {retried}" if retried else ""), refresh=False)
    finally:
        bar.close()
        results.sort(keys)
    if failed:
        key, message = next(iter(failed.items()))
        raise PadhashError(f"{len(failed)} of {len(pending)} trials failed (first: {key}: {message}; log: "
                           f"{log_path(log_dir, key)}); finished trials are kept, run again to retry the others")


def _shared_trials(trials: list[TrialSpec], results, relabel) -> tuple[list[TrialSpec], dict[str, list[TrialSpec]]]:
    """(the trials to run, their key → the unfinished trials of the same identity); an unfinished trial whose
    identity's first trial has finished gets its relabelled record here."""
    first: dict[str, TrialSpec] = {}
    pending, waiting = [], {}
    for t in trials:
        source = first.setdefault(t.identity, t) if t.identity is not None else t
        if results.has(t.key):
            continue
        if source is t:
            pending.append(t)
        elif results.has(source.key):
            results.add(_relabelled(relabel, results.get(source.key), t))
        else:
            waiting.setdefault(source.key, []).append(t)
    return pending, waiting


def _relabelled(relabel, record: dict, spec: TrialSpec) -> dict:
    out = relabel(record, spec)
    if out.get("key") != spec.key:
        raise ValueError(f"relabel gave {spec.key!r} a record keyed {out.get('key')!r}")
    return out


_PER_PROCESS: dict[tuple, Any] = {}


def per_process(key: tuple, make: Callable[[], Any]) -> Any:
    """The object `make()` built for `key` in this process (a worker's cache of the run it works for: data sets,
    shared models), built on first use; one at a time, so a worker that moves to another run drops the last one."""
    if key not in _PER_PROCESS:
        _PER_PROCESS.clear()
        _PER_PROCESS[key] = make()
    return _PER_PROCESS[key]


def gpus_per_trial(device: str) -> float:
    """What Ray reserves per trial: one GPU with a cuda device, none on the CPU."""
    import torch

    return 1.0 if torch.device(device).type == "cuda" else 0.0


def log_path(log_dir: Path, key: str) -> Path:
    return Path(log_dir) / ("".join(c if c.isalnum() or c in "-_.=" else "_" for c in key) + ".log")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(executor: ExecutorConfig, workers: int) -> int:
    return executor.threads or max(1, default_workers() // workers)


def _run_one(fn, spec: TrialSpec, log_dir: str | Path, threads: int | None) -> tuple[str, Any]:
    """("done", record) or ("failed", one-line message); the trial's stdout/stderr go to its log."""
    import torch

    path = log_path(log_dir, spec.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"--- trial {spec.key} on {socket.gethostname()} pid {os.getpid()}, "
                  f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            _test_kill_hook(spec.key, path)
            record = fn(spec.config, spec.key)
            log.write(f"--- done in {time.time() - start:.1f} s\n")
            return "done", record
        except Exception as exc:  # noqa: BLE001 - a failed trial must not stop the others
            traceback.print_exc(file=log)
            text = str(exc).splitlines()[0] if str(exc) else ""
            return "failed", text if isinstance(exc, PadhashError) else f"{type(exc).__name__}: {text}"
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            torch.set_num_threads(before)


def _test_kill_hook(key: str, log: Path) -> None:
    """Test only: with PADHASH_TEST_KILL_TRIAL=<key>, the worker running that trial kills itself (SIGKILL) on its
    first attempt (a marker beside the log remembers it), to test that a lost worker costs only a retry."""
    if os.environ.get(TEST_KILL_ENV) == key and not log.with_suffix(".killed").exists():
        log.with_suffix(".killed").touch()
        os.kill(os.getpid(), signal.SIGKILL)


Events = Iterator[tuple[str, str, Any]]  # ("start" | "retry" | "done" | "failed", key, record or message)


# ------------------------------------------------------------------------------------------------------- local
def _local(pending, fn, executor: ExecutorConfig, log_dir, gpus) -> Events:
    for spec in pending:
        yield "start", spec.key, None
        yield (*_finished(_run_one(fn, spec, log_dir, executor.threads), spec.key),)


def _finished(outcome: tuple[str, Any], key: str) -> tuple[str, str, Any]:
    return outcome[0], key, outcome[1]


# -------------------------------------------------------------------------------------------------- processes
def _pool_worker(conn, fn, threads: int, log_dir: str) -> None:
    """A pool process: runs the trials it is sent, one at a time, until told to stop or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends the workers
    os.environ["OMP_NUM_THREADS"] = str(threads)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        try:
            conn.send(_run_one(fn, spec, log_dir, threads))
        except OSError:  # the parent is gone: nobody to send the record to (a resumed run reruns the trial)
            return


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """A killed parent (kill -9) cannot stop its workers: each stops itself rather than finish a trial for nobody."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


class _Worker:
    def __init__(self, ctx, fn, threads: int, log_dir: Path):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_pool_worker, args=(child, fn, threads, str(log_dir)), daemon=True)
        self.proc.start()
        child.close()
        self.spec: TrialSpec | None = None

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _processes(pending, fn, executor: ExecutorConfig, log_dir, gpus) -> Events:
    # spawn, not fork: a forked child of a process with torch threads (or CUDA) can deadlock.
    ctx = multiprocessing.get_context("spawn")
    size = min(executor.workers or default_workers(), len(pending))
    threads = _threads(executor, executor.workers or default_workers())
    queue = deque(pending)
    attempts: dict[str, int] = {}
    workers = [_Worker(ctx, fn, threads, log_dir) for _ in range(size)]
    try:
        while queue or any(w.spec for w in workers):
            for i, w in enumerate(workers):
                if w.spec is None and queue:
                    if not w.proc.is_alive():
                        workers[i] = w = _Worker(ctx, fn, threads, log_dir)
                    w.spec = queue.popleft()
                    w.conn.send(w.spec)
                    yield "start", w.spec.key, None
            busy = [w for w in workers if w.spec]
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for i, w in enumerate(workers):
                if w.spec is None:
                    continue
                spec, outcome = w.spec, None
                try:
                    if w.conn.poll():
                        outcome = w.conn.recv()
                except (EOFError, OSError):
                    pass
                if outcome is not None:
                    w.spec = None
                    yield _finished(outcome, spec.key)
                elif not w.proc.is_alive():  # lost mid-trial: retry on a fresh worker, bounded
                    w.proc.join()
                    workers[i] = _Worker(ctx, fn, threads, log_dir)
                    attempts[spec.key] = attempts.get(spec.key, 0) + 1
                    if attempts[spec.key] <= executor.retries:
                        queue.appendleft(spec)
                        yield "retry", spec.key, None
                    else:
                        yield "failed", spec.key, (f"its worker died (exit code {w.proc.exitcode}) on all "
                                                   f"{attempts[spec.key]} attempts")
    finally:
        for w in workers:
            w.stop()


# -------------------------------------------------------------------------------------------------------- ray
def _ray(pending, fn, executor: ExecutorConfig, log_dir, gpus) -> Events:
    try:
        import ray
    except ImportError:
        raise PadhashError("--executor ray needs Ray: pip install 'padhash[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            _ray_init(ray, executor)
        except Exception as exc:  # noqa: BLE001 - Ray raises plain Exceptions (e.g. a start-up time-out)
            ray.shutdown()
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise PadhashError(f"Ray did not start ({executor.ray_address or 'a local instance'}): {first}") from None
    try:
        resources = ray.cluster_resources()
        threads = executor.threads or (1 if executor.ray_address else _threads(executor, executor.workers
                                                                                or default_workers()))
        capacity = resources.get("GPU", 0) / gpus if gpus else resources.get("CPU", 1) / threads
        slots = executor.workers or max(1, int(capacity))
        # max_retries covers lost workers only; exceptions come back as ("failed", message) and are not retried.
        task = ray.remote(_run_one).options(num_cpus=threads, num_gpus=gpus, max_retries=executor.retries,
                                              retry_exceptions=False)
        queue, in_flight = deque(pending), {}
        while queue or in_flight:
            while queue and len(in_flight) < slots:
                spec = queue.popleft()
                in_flight[task.remote(fn, spec, str(log_dir), threads)] = spec.key
                yield "start", spec.key, None
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                key = in_flight.pop(ref)
                try:
                    yield _finished(ray.get(ref), key)
                except ray.exceptions.RayError as exc:  # the worker was lost on every attempt
                    yield "failed", key, f"{type(exc).__name__} after {executor.retries + 1} attempts"
    finally:
        if started:
            ray.shutdown()


def _ray_init(ray, executor: ExecutorConfig) -> None:
    if executor.ray_address:
        ray.init(address=executor.ray_address, log_to_driver=False)
        return
    # A private local instance (address="local" never joins a cluster found on this machine); trials return
    # small records, so a small object store suffices. Workers inherit this process's environment (PYTHONPATH).
    cpus = (executor.workers or default_workers()) * _threads(executor, executor.workers or default_workers())
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 ** 2, configure_logging=False)
