"""Runs a list of `build.py` subcommands (stages) in dependency order, skipping those already done, with progress.

A stage is up to date, and skipped, when its stamp records the same command, all its outputs exist, and the oldest
output is at least as new as the newest input. Each stage runs as `python build.py ...` in its own process (so one
stage's torch/finn-plus state cannot leak into the next); its output goes to `LOG_DIR/<stage>.log` and, line by
line with the stage's name in front, to the console. Up to `jobs` independent stages run at once. A failed stage
blocks the stages that depend on it; the others go on. A stage whose need is only known once the stages before it
ran (`skip_reason`) is settled as "not needed" when that says so. Progress is counted over all stages, `[k/N]`.
When the runner is interrupted (Ctrl-C, SIGTERM) it terminates the stages still running, which remove their
temporary files on the way out.
"""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from psa_finn.common.atomic_files import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = "logs"
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class Stage:
    """One step of a flow: `build.py` arguments, the files it reads and writes, and the stages it waits for."""

    name: str
    command: tuple
    inputs: tuple = ()
    outputs: tuple = ()
    after: tuple = ()
    skip_reason: Callable[[], str] | None = None  # when it returns a reason, the stage is not needed


@dataclass
class StageResult:
    """How a stage ended: "done", "skipped" (up to date), "not needed", "failed" or "blocked" (a stage it needs
    failed).

    `seconds` is the stage's run time and `cpu_s` the CPU time its process used (a truer measure than wall time on a
    busy machine); for a skipped stage, those of the run that made its outputs.
    """

    name: str
    status: str
    seconds: float = 0.0
    cpu_s: float = 0.0
    log: Path | None = None
    detail: str = ""


@dataclass
class _Console:
    """Serialised console output shared by the stages running at once."""

    stream: object = field(default_factory=lambda: sys.stdout)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, text: str):
        with self.lock:
            print(text, file=self.stream, flush=True)


def _stamp_path(work_dir: Path, stage: Stage) -> Path:
    return work_dir / LOG_DIR / f"{stage.name}.done.json"


def is_up_to_date(work_dir, stage: Stage) -> bool:
    """True when the stage's stamp matches its command and every output exists and is newer than every input."""
    stamp = _stamp_path(Path(work_dir), stage)
    if not stamp.is_file() or not all(Path(p).exists() for p in stage.outputs):
        return False
    try:
        if json.loads(stamp.read_text()).get("command") != list(stage.command):
            return False
    except json.JSONDecodeError:
        return False
    if any(not Path(p).exists() for p in stage.inputs):
        return False
    newest_input = max((Path(p).stat().st_mtime for p in stage.inputs), default=0.0)
    oldest_output = min(Path(p).stat().st_mtime for p in stage.outputs) if stage.outputs else 0.0
    return oldest_output >= newest_input


def _recorded_times(work_dir: Path, stage: Stage) -> tuple:
    """(wall seconds, CPU seconds) of the stage when it last ran (from its stamp)."""
    stamp = json.loads(_stamp_path(work_dir, stage).read_text())
    return float(stamp.get("seconds", 0.0)), float(stamp.get("cpu_s", 0.0))


def _wait_with_cpu_time(process) -> tuple:
    """Reap `process`: (exit status as Popen gives it, CPU seconds it and its reaped children used)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def _child_environment(jobs: int) -> dict:
    """The stages' environment: CPU threads shared among the stages running at once, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _final_state(raw: bytes) -> str:
    """A line of a stage's output as a terminal would leave it: the text after the last carriage return (progress
    bars redraw themselves with \\r), without trailing blanks."""
    segments = [seg for seg in raw.decode(errors="replace").rstrip("\n").split("\r") if seg.strip()]
    return segments[-1].rstrip() if segments else ""


def _run_stage(work_dir: Path, stage: Stage, console: _Console, env: dict, processes: set) -> StageResult:
    log = work_dir / LOG_DIR / f"{stage.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    command = [sys.executable, "-m", "psa_finn.build", *stage.command]
    with open(log, "w") as log_file:
        log_file.write("$ " + " ".join(command) + "\n")
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        processes.add(process)
        try:
            for raw in process.stdout:
                line = _final_state(raw)
                if line:
                    log_file.write(line + "\n")
                    log_file.flush()
                    console.line(f"  [{stage.name}] {line}")
            status, cpu_s = _wait_with_cpu_time(process)
        finally:
            processes.discard(process)
    seconds = time.monotonic() - start
    if status != 0:
        return StageResult(stage.name, "failed", seconds, cpu_s, log, f"exit status {status}")
    missing = [str(p) for p in stage.outputs if not Path(p).exists()]
    if missing:
        return StageResult(stage.name, "failed", seconds, cpu_s, log,
                           f"finished but did not write {', '.join(missing)}")
    write_text_atomic(_stamp_path(work_dir, stage), json.dumps({"command": list(stage.command),
                                                                "seconds": round(seconds, 1),
                                                                "cpu_s": round(cpu_s, 1)}))
    return StageResult(stage.name, "done", seconds, cpu_s, log)


def run_stages(stages, work_dir, jobs: int = 2, stream=None, force: bool = False) -> list:
    """Run `stages` (dependencies through `after`), at most `jobs` at a time; returns a StageResult per stage.

    With `force`, stages run even when they are up to date."""
    work_dir = Path(work_dir)
    names = [s.name for s in stages]
    unknown = {dep for s in stages for dep in s.after} - set(names)
    if len(set(names)) != len(names) or unknown:
        raise ValueError(f"stage names must be unique and dependencies known; unknown: {sorted(unknown)}")
    console = _Console(stream or sys.stdout)
    env = _child_environment(jobs)
    processes = set()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            return _run_all(stages, work_dir, jobs, force, console, env, pool, processes)
        except BaseException:  # before the pool's exit waits for them: stop the stages still running
            for process in list(processes):
                process.terminate()
            raise


def _run_all(stages, work_dir: Path, jobs: int, force: bool, console: _Console, env: dict, pool,
             processes: set) -> list:
    names = [s.name for s in stages]
    results, running, started = {}, {}, {}
    total = len(stages)
    while len(results) < total:
        settled_before = len(results)
        for stage in stages:
            if stage.name in results or stage.name in running:
                continue
            if any(results[dep].status in ("failed", "blocked") for dep in stage.after if dep in results):
                results[stage.name] = StageResult(stage.name, "blocked", detail="a stage it needs failed")
                console.line(f"[{len(results)}/{total}] {stage.name}: blocked (a stage it needs failed)")
            elif all(dep in results for dep in stage.after) and len(running) < jobs:
                reason = stage.skip_reason() if stage.skip_reason is not None else ""
                if reason:
                    results[stage.name] = StageResult(stage.name, "not needed", detail=reason)
                    console.line(f"[{len(results)}/{total}] {stage.name}: not needed ({reason})")
                elif not force and is_up_to_date(work_dir, stage):
                    results[stage.name] = StageResult(stage.name, "skipped", *_recorded_times(work_dir, stage))
                    console.line(f"[{len(results)}/{total}] {stage.name}: up to date, skipped")
                else:
                    console.line(f"-> {stage.name}: build.py {' '.join(stage.command)}")
                    running[stage.name] = pool.submit(_run_stage, work_dir, stage, console, env, processes)
                    started[stage.name] = time.monotonic()
        if not running:
            if len(results) == settled_before and len(results) < total:
                raise ValueError(f"stages wait on each other in a cycle: {sorted(set(names) - set(results))}")
            continue
        finished, _ = wait(running.values(), timeout=HEARTBEAT_S, return_when=FIRST_COMPLETED)
        if not finished:
            now = time.monotonic()
            console.line("   ... still running: " + ", ".join(f"{n} ({now - started[n]:.0f} s)" for n in running))
        for name in [n for n, future in running.items() if future in finished]:
            result = running.pop(name).result()
            results[name] = result
            ending = "done" if result.status == "done" else f"FAILED ({result.detail}); log: {result.log}"
            console.line(f"[{len(results)}/{total}] {name}: {ending} in {result.seconds:.0f} s")
    return [results[name] for name in names]


def idle_wall_estimate_s(stages, results, jobs: int) -> float:
    """The wall time `stages` would take on `jobs` otherwise idle cores: each stage lasting its measured CPU time
    (one core each), started as `run_stages` starts them (in order, once its dependencies are done and a slot is
    free). On a busy machine this is a truer figure than the wall time, which counts the waiting for a core."""
    cpu = {r.name: r.cpu_s for r in results}
    pending, running, done, now = list(stages), [], set(), 0.0
    while pending or running:
        ready = [s for s in pending if all(dep in done for dep in s.after)]
        for stage in ready[:max(0, jobs - len(running))]:
            running.append((now + cpu.get(stage.name, 0.0), stage.name))
            pending.remove(stage)
        if not running:
            break
        running.sort()
        now, name = running.pop(0)
        done.add(name)
    return now
