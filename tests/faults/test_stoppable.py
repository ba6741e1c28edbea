"""SIGTERM and SIGINT stop the long data commands within a second, leaving nothing half-written (issue 23).

Each test starts the real ``proxyhpo`` command in a subprocess, waits until it is at work (its staging
folder exists, or it has printed its progress), sends the signal and measures how long the process takes
to end. Before the fix SIGTERM killed ``synth`` at once and left its ``.partial`` staging folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PROXYHPO_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "proxyhpo", *argv], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    """Undo an inherited SIGINT ignore: a suite started in the background (``make test &``, nohup) ignores SIGINT,
    every child inherits that, and Python then leaves it ignored, as a shell's background job must."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the command never got to work"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_synth_stops_within_a_second_and_leaves_no_partial_folder(tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "phantoms"
    process = _start(tmp_path, "synth", "spleen", "--out", str(out), "--cases", "400", "--size", "64")
    _wait_for(lambda: any(p.name.endswith(".partial") for p in tmp_path.iterdir()) or process.poll() is not None)
    assert process.poll() is None, process.communicate()
    time.sleep(0.3)  # at work inside the staging folder
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=5)
    finally:
        process.kill()
    took = time.monotonic() - sent
    assert process.returncode == code, stderr
    assert took < 1.5, took  # a second, and the slack of a loaded 2-core machine
    assert "Traceback" not in stderr, stderr
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
