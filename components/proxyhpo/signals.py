"""SIGTERM ends a trial the way Ctrl-C does.

Kubernetes sends SIGTERM to a pod it is about to evict, then SIGKILL after the grace period. Python's
default for SIGTERM is to die at once, which leaves every MLflow run of the pod RUNNING forever. While
trials train, :func:`sigterm_ends_trials` turns SIGTERM into a :class:`Terminated` exception in the main
thread: it unwinds like :class:`KeyboardInterrupt`, so :func:`proxyhpo.tracking.trial_runs` marks the
open runs FAILED with the reason ``terminated (SIGTERM)``, and the process then exits with code 143
(128 + SIGTERM) and one line on stderr, without a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "TERMINATED_REASON", "EXIT_TERMINATED", "sigterm_ends_trials", "fail_reason_of"]

EXIT_TERMINATED = 128 + signal.SIGTERM
TERMINATED_REASON = "terminated (SIGTERM)"
INTERRUPTED_REASON = "interrupted (SIGINT)"


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives while trials train.

    It is a :class:`SystemExit` with code 143: ``except Exception`` blocks let it through, clean-up code
    (``finally``, ``except BaseException``) runs, and an unhandled one ends the process with exit code 143
    and no traceback.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def fail_reason_of(exc: BaseException) -> str:
    """The ``proxyhpo.fail_reason`` of runs closed because ``exc`` unwound through them."""
    if isinstance(exc, Terminated):
        return TERMINATED_REASON
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED_REASON
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


@contextmanager
def sigterm_ends_trials() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread; the previous handler is restored after.

    A second SIGTERM during the clean-up is ignored, so closing the runs is not itself interrupted (the
    SIGKILL that follows the grace period still ends everything). Outside the main thread (where Python
    cannot install handlers) the block runs unchanged. When :class:`Terminated` leaves the block, one line
    saying so goes to stderr.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def _raise(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up must not be interrupted by a second one
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    except Terminated:
        print("proxyhpo: terminated (SIGTERM); open MLflow runs were marked FAILED", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
