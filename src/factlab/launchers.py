"""Where the cells of a sweep run: in-process, local worker processes, Ray, or SLURM (submitit).

Every launcher has one method, `run(fn, tasks)`, that calls the module-level function `fn` once
per task (a JSON-able dict) and yields `(task, result)` pairs as they finish, in any order. `fn`
writes the run directory itself, so every launcher produces the same
files and the same table. A task whose worker died yields a result `{"status": "error", ...}`
instead of an exception, so one lost cell never stops the others.

- `serial`   in the driver process, one after another (debugging, pdb).
- `local`    `ProcessPoolExecutor` with the spawn context, one single-threaded worker per core
             (default). Workers die with the driver, so a `kill -9` of the driver leaves no orphans.
- `ray`      Ray tasks with one CPU each; connects to `address` (or $RAY_ADDRESS) when given,
             else starts a local Ray instance with `workers` CPUs. Needs the `[ray]` extra.
- `submitit` SLURM job arrays through `submitit.AutoExecutor` (or local subprocesses with
             `cluster="local"` when there is no SLURM). Needs the `[slurm]` extra.

Ray and submitit are imported only when their launcher is built; importing factlab never
imports them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from factlab.config import ConfigError

Task = dict[str, Any]
Result = dict[str, Any]
CellFn = Callable[[Task], Result]

LAUNCHERS = ("local", "serial", "ray", "submitit")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "FACTLAB_THREADS")


def physical_cores() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def single_thread_env() -> dict[str, str]:
    """Environment variables that pin BLAS/OpenMP to one thread (read when torch loads), and
    factlab's own override, so that a cell's run keeps one thread whatever its experiment
    declares (workers share the cores)."""
    return {var: "1" for var in _THREAD_VARS}


@contextlib.contextmanager
def _single_thread_environ() -> Iterator[None]:
    """Pin BLAS/OpenMP to one thread in os.environ (children inherit it); restore on exit."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update(single_thread_env())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker_died(task: Task, err: BaseException) -> Result:
    return {"status": "error", "run_id": task.get("run_id"),
            "error": f"worker failed: {type(err).__name__}: {err}".strip()}


class SerialLauncher:
    """Run every task in this process, in order."""

    name = "serial"

    def __init__(self, workers: int = 1, **_: Any):
        self.workers = 1

    def run(self, fn: CellFn, tasks: list[Task]) -> Iterator[tuple[Task, Result]]:
        for task in tasks:
            yield task, fn(task)


def _init_local_worker(parent_pid: int) -> None:
    """Worker start-up: one thread, and die with the driver (so no orphan keeps writing)."""
    import signal

    os.environ.update(single_thread_env())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the driver dies
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the driver died before we got here
        os._exit(1)

    def watch() -> None:  # portable fallback for systems without PDEATHSIG
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    import torch

    torch.set_num_threads(1)


class LocalLauncher:
    """A spawn-context process pool with `workers` single-threaded workers.

    A worker killed mid-task breaks the pool; the launcher then starts a fresh pool for the
    remaining tasks (up to `restarts` times) and reports the lost ones as errors.
    """

    name = "local"

    def __init__(self, workers: int | None = None, restarts: int = 2, **_: Any):
        self.workers = workers or physical_cores()
        self.restarts = restarts

    def run(self, fn: CellFn, tasks: list[Task]) -> Iterator[tuple[Task, Result]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        # Spawned workers inherit the environment: set the thread caps before they import torch.
        pending = list(tasks)
        restarts = self.restarts
        with _single_thread_environ():
            while pending:
                pool = ProcessPoolExecutor(
                    max_workers=min(self.workers, len(pending)),
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_local_worker, initargs=(os.getpid(),))
                broken: list[Task] = []
                try:
                    futures = {pool.submit(fn, t): t for t in pending}
                    pending = []
                    while futures:
                        done, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for fut in done:
                            task = futures.pop(fut)
                            try:
                                yield task, fut.result()
                            except BrokenProcessPool:
                                broken.append(task)
                            except Exception as err:
                                yield task, _worker_died(task, err)
                except BaseException:  # Ctrl-C or an abandoned generator: stop now
                    for proc in list(getattr(pool, "_processes", {}).values()):
                        proc.kill()  # in-flight cells stay unfinished and rerun next time
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                pool.shutdown(wait=True)
                if broken and restarts > 0:
                    restarts -= 1
                    pending = broken
                else:
                    for task in broken:
                        yield task, _worker_died(task, RuntimeError("worker process died"))


def _ray_cell(fn: CellFn, task: Task) -> Result:
    """Ray task body: one thread, then the cell."""
    os.environ.update(single_thread_env())
    import torch

    torch.set_num_threads(1)
    return fn(task)


class RayLauncher:
    """Ray tasks with one CPU each, on an existing cluster or a local one started here."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, **_: Any):
        self.workers = workers or physical_cores()
        self.address = address or os.environ.get("RAY_ADDRESS")

    def run(self, fn: CellFn, tasks: list[Task]) -> Iterator[tuple[Task, Result]]:
        try:
            import ray
        except ImportError:

            raise ConfigError("--launcher ray needs the ray extra: pip install 'factlab[ray]'") \
                from None
        started = False
        if not ray.is_initialized():
            env = {"env_vars": single_thread_env()}
            if self.address:
                ray.init(address=self.address, runtime_env=env, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                         runtime_env=env)
                started = True
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
            refs = {remote.remote(fn, t): t for t in tasks}
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                task = refs.pop(done[0])
                try:
                    yield task, ray.get(done[0])
                except Exception as err:
                    yield task, _worker_died(task, err)
        finally:
            if started:
                ray.shutdown()


class SubmititLauncher:
    """SLURM job arrays through submitit; `cluster="local"` runs jobs as local subprocesses.

    On SLURM the whole sweep goes out as one array (`map_array`), throttled to `workers`
    concurrent jobs when given. Locally, at most `workers` jobs run at once. `folder` (job logs
    and pickles) must be on a filesystem the compute nodes share.
    """

    name = "submitit"

    def __init__(self, workers: int | None = None, folder: str | Path = "submitit",
                 cluster: str | None = None, timeout_min: int = 60,
                 slurm_partition: str | None = None, **_: Any):
        self.workers = workers
        self.folder = Path(folder)
        self.cluster = cluster or os.environ.get("FACTLAB_SUBMITIT_CLUSTER")
        self.timeout_min = timeout_min
        self.partition = slurm_partition

    def run(self, fn: CellFn, tasks: list[Task]) -> Iterator[tuple[Task, Result]]:
        try:
            import submitit
        except ImportError:

            raise ConfigError("--launcher submitit needs the slurm extra: "
                              "pip install 'factlab[slurm]'") from None
        executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": self.timeout_min, "cpus_per_task": 1,
                                  "name": "factlab-sweep"}
        if executor.cluster == "slurm":
            params["slurm_setup"] = [f"export {k}={v}" for k, v in single_thread_env().items()]
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.workers:
                params["slurm_array_parallelism"] = self.workers
        executor.update_parameters(**params)
        with _single_thread_environ():  # local jobs inherit the environment
            if executor.cluster == "slurm":
                jobs = executor.map_array(fn, tasks)
                yield from self._collect(list(zip(jobs, tasks)))
            else:
                yield from self._windowed(executor, fn, tasks, self.workers or physical_cores())

    @staticmethod
    def _result(job: Any, task: Task) -> Result:
        try:
            return job.result()
        except Exception as err:
            return _worker_died(task, err)

    def _drain(self, running: list[tuple[Any, Task]]
               ) -> Generator[tuple[Task, Result], None, list[tuple[Any, Task]]]:
        """Yield the finished jobs' results; return the jobs still running."""
        still = []
        for job, task in running:
            if job.done():
                yield task, self._result(job, task)
            else:
                still.append((job, task))
        return still

    def _collect(self, running: list[tuple[Any, Task]]) -> Iterator[tuple[Task, Result]]:
        while running:
            running = yield from self._drain(running)
            if running:
                time.sleep(0.5)

    def _windowed(self, executor: Any, fn: CellFn, tasks: list[Task],
                  window: int) -> Iterator[tuple[Task, Result]]:
        queue = list(tasks)
        running: list[tuple[Any, Task]] = []
        while queue or running:
            while queue and len(running) < window:
                task = queue.pop(0)
                running.append((executor.submit(fn, task), task))
            time.sleep(0.2)
            running = yield from self._drain(running)


def make_launcher(name: str, workers: int | None = None, **options: Any) -> Any:
    """The launcher called `name` (one of LAUNCHERS), configured with `workers` and options."""
    classes = {"serial": SerialLauncher, "local": LocalLauncher, "ray": RayLauncher,
               "submitit": SubmititLauncher}
    if name not in classes:
        raise ConfigError(f"--launcher: unknown launcher {name!r}; "
                          f"available: {', '.join(LAUNCHERS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"--workers: must be a whole number >= 1 (omit it for one per core), "
                          f"got {workers!r}")
    return classes[name](workers=workers, **options)


def format_exception(err: BaseException) -> dict[str, str]:
    """{"type", "message", "traceback"} of an exception, for error.json."""
    return {"type": type(err).__name__, "message": str(err),
            "traceback": "".join(traceback.format_exception(err))}
