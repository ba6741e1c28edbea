"""SIGTERM ends a trial the way Ctrl-C does.

Kubernetes sends SIGTERM to a pod it is about to evict, then SIGKILL after the grace period. Python's
default for SIGTERM is to die at once, which leaves every MLflow run of the pod RUNNING forever. While
trials train, :func:`sigterm_ends_trials` turns SIGTERM into a :class:`Terminated` exception in the main
thread: it unwinds like :class:`KeyboardInterrupt`, so :func:`proxyhpo.tracking.trial_runs` marks the
open runs FAILED with the reason ``terminated (SIGTERM)``, and the process then exits with code 143
(128 + SIGTERM) and one line on stderr, without a traceback.

Locally, ``proxyhpo run`` is the launcher of every task process, and names itself in
:data:`LAUNCHER_ENV`. A launcher killed with SIGKILL cannot stop its tasks, so while trials train a
watchdog thread checks every second that the launcher is still there, and ends the trials as SIGTERM would
when it is not: a study killed any way leaves no trial training, and no run RUNNING, behind it.

The launcher itself cannot stop by unwinding an exception: kfp's local runner waits for its worker
threads in a ``finally`` (and retries a task that failed). :func:`stop_on_signals` runs the stop on a
thread of its own instead, which ends the process when the study's runs are closed; a second Ctrl-C
while it works exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "Terminated",
    "TERMINATED_REASON",
    "EXIT_TERMINATED",
    "LAUNCHER_ENV",
    "sigterm_ends_trials",
    "termination_deferred",
    "stop_on_signals",
    "exit_code_of",
    "fail_reason_of",
    "launcher_identity",
    "launcher_gone",
]

EXIT_TERMINATED = 128 + signal.SIGTERM
TERMINATED_REASON = "terminated (SIGTERM)"
INTERRUPTED_REASON = "interrupted (SIGINT)"
#: ``<pid>:<start time>`` of the local launcher whose tasks these processes are (set by ``proxyhpo run --local``).
LAUNCHER_ENV = "PROXYHPO_LAUNCHER"
LAUNCHER_POLL_S = 1.0

#: How many :func:`termination_deferred` blocks the main thread is in, and whether a SIGTERM waits for their end.
_deferring = {"depth": 0, "pending": False}


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives while trials train.

    It is a :class:`SystemExit` with code 143: ``except Exception`` blocks let it through, clean-up code
    (``finally``, ``except BaseException``) runs, and an unhandled one ends the process with exit code 143
    and no traceback.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def exit_code_of(signum: int) -> int:
    """The exit code of a process ended by signal ``signum``: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


def reason_of_signal(signum: int) -> str:
    """The ``proxyhpo.fail_reason`` of runs closed because signal ``signum`` arrived."""
    return INTERRUPTED_REASON if signum == signal.SIGINT else TERMINATED_REASON if signum == signal.SIGTERM else f"signal {signal.Signals(signum).name}"


@contextmanager
def stop_on_signals(stop: Callable[[int], None], *, say: Callable[[str], None]) -> Iterator[threading.Event]:
    """While the block runs, the first SIGINT or SIGTERM calls ``stop(signum)`` on a thread of its own; a second one exits at once.

    Nothing is raised in the main thread, which may be waiting inside a library that would not let an
    exception through until its work is done. ``stop`` ends the process itself (``os._exit``) when it has
    closed what it must. A second signal while it works ends the process at once with ``128 + signum``,
    after ``say`` reports it. Outside the main thread the block runs unchanged.

    Yields:
        An event set once a signal arrived: the main thread, should its call return meanwhile, waits
        instead of reporting the outcome of a run that is being stopped.
    """
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return

    def _handle(signum: int, frame: object) -> None:
        if stopping.is_set():
            say(f"{reason_of_signal(signum)} again: exiting at once; the next start of the study closes what is left open")
            os._exit(exit_code_of(signum))
        stopping.set()
        threading.Thread(target=stop, args=(signum,), name="proxyhpo-stop", daemon=True).start()

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _handle)
    try:
        yield stopping
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def fail_reason_of(exc: BaseException) -> str:
    """The ``proxyhpo.fail_reason`` of runs closed because ``exc`` unwound through them."""
    if isinstance(exc, Terminated):
        return TERMINATED_REASON
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED_REASON
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (``%.2f`` seconds since the epoch), or None when there is no such process."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{process.create_time():.2f}"
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:  # alive, but not ours to inspect
        return "?"


def launcher_identity(pid: int | None = None) -> str:
    """The :data:`LAUNCHER_ENV` value naming process ``pid`` (this one by default): its pid and start time."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or '?'}"


def launcher_gone(identity: str) -> bool:
    """Whether the launcher named by ``identity`` (see :func:`launcher_identity`) has ended (its pid gone, or reused)."""
    pid, _, started = identity.partition(":")
    if not pid.isdigit():
        return False
    now = _start_time(int(pid))
    return now is None or ("?" not in (now, started) and now != started)


def _watch_launcher(identity: str, stop: threading.Event) -> None:
    """Send this process SIGTERM when the launcher ``identity`` ends (checked every :data:`LAUNCHER_POLL_S` seconds)."""
    while not stop.wait(LAUNCHER_POLL_S):
        if launcher_gone(identity):
            print(f"proxyhpo: the launcher (process {identity.partition(':')[0]}) is gone; ending the trials", file=sys.stderr)
            os.kill(os.getpid(), signal.SIGTERM)
            return


@contextmanager
def termination_deferred() -> Iterator[None]:
    """While the block runs, a SIGTERM that :func:`sigterm_ends_trials` turns into :class:`Terminated` waits for its end.

    For a write to a store that must not be cut in half: raised in the middle of an MLflow call on a SQLite store,
    Terminated left a transaction holding the database's lock, and closing the runs then waited on that lock until the
    pod's grace period was over. The exception is raised when the outermost such block ends (not when it ends by an
    exception of its own, which unwinds anyway). Outside the main thread the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring["depth"] += 1
    try:
        yield
    finally:
        _deferring["depth"] -= 1
        if not _deferring["depth"] and _deferring["pending"] and sys.exc_info()[0] is None:
            _deferring["pending"] = False
            raise Terminated()


@contextmanager
def sigterm_ends_trials() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread; the previous handler is restored after.

    A second SIGTERM during the clean-up is ignored, so closing the runs is not itself interrupted (the
    SIGKILL that follows the grace period still ends everything). Outside the main thread (where Python
    cannot install handlers) the block runs unchanged. When :class:`Terminated` leaves the block, one line
    saying so goes to stderr. With :data:`LAUNCHER_ENV` set, the end of the launcher counts as SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def _raise(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up must not be interrupted by a second one
        if _deferring["depth"]:  # inside a store write: raised when it ends (termination_deferred)
            _deferring["pending"] = True
            return
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)
    stop = threading.Event()
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher:
        threading.Thread(target=_watch_launcher, args=(launcher, stop), name="proxyhpo-launcher-watch", daemon=True).start()
    try:
        yield
    except Terminated:
        print("proxyhpo: terminated (SIGTERM); open MLflow runs were marked FAILED", file=sys.stderr)
        raise
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
