"""What a user sees of `proxyhpo run` in a real terminal, and what one or two Ctrl-C do (issue 22).

The real command runs the tiny study of tests/pipelines/test_local_run.py in a pseudo-terminal of its own
(stdlib ``pty``: the launcher and its task processes are the terminal's foreground process group, so the
Ctrl-C typed into it reaches them all, as at a shell). Typed once while trials train, it must stop the
study with exit code 130 and no traceback, every executor's output having gone to the task log rather
than the screen; started again with the same command, the study resumes; typed twice, the launcher exits
at once.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import struct
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from proxyhpo.tracking import names

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TESTS = Path(__file__).parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
CTRL_C = b"\x03"


class Terminal:
    """`proxyhpo run CONFIG` in a pseudo-terminal of 120 columns; what it showed, escapes stripped."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        import fcntl
        import termios

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its own session, the pty its controlling terminal
            os.chdir(config.parent)
            os.execve(sys.executable, [sys.executable, "-m", "proxyhpo", "run", str(config)], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self.raw = b""
        self.code: int | None = None

    @property
    def shown(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.raw += os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                time.sleep(timeout)

    def _reap(self) -> bool:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code is not None

    def until(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read until the screen matches ``pattern``; fail if the launcher ends first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.2)
            found = re.search(pattern, self.shown)
            if found:
                return found
            assert not self._reap(), f"exited {self.code} before showing {pattern!r}:\n{self.shown[-3000:]}"
        raise AssertionError(f"not shown within {timeout} s: {pattern!r}:\n{self.shown[-3000:]}")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self._reap():
            assert time.monotonic() < deadline, f"still running after {timeout} s:\n{self.shown[-3000:]}"
            self._read(0.1)
        self._read(0.1)
        return self.code  # type: ignore[return-value]

    def kill(self) -> None:
        """End the launcher, should it still run, and whatever of its session is left."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self._reap():
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def _study_config(folder: Path) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tiny_hpo_study_terminal", TESTS / "pipelines" / "test_local_run.py")
    tiny = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(tiny)  # type: ignore[union-attr]
    document = tiny.tiny_study(folder, selection={"method": "ncc", "budget": 4}).model_dump(mode="json")
    document["training"]["epochs"] = 4  # long enough to be interrupted after its first epochs
    config = folder / "study.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


def test_the_terminal_shows_progress_and_one_ctrl_c_stops_the_study(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(PROXYHPO_HOME=str(home), TERM="xterm-256color", OMP_NUM_THREADS="1")
    config = _study_config(tmp_path)

    first = Terminal(config, env)
    try:
        first.until(r"[1-9]\d*/\d+ trial-epochs", timeout=300)  # a trial trained an epoch: the bar counts it
        first.until(r"best val Dice so far \d\.\d{3} \(r0-t00\d", timeout=60)
        first.type(CTRL_C)
        assert first.wait(timeout=90) == 130
    finally:
        first.kill()
    shown = first.shown
    assert re.search(r"round 1/2 · trials \d/4", shown) and "ETA" in shown
    assert "lr " in shown and "optimizer " in shown  # the best trial's hyper-parameters
    assert "study tiny-local stopped and its MLflow runs were closed; run the same command again to resume it" in shown
    # nothing of the tasks on the screen: no executor, no runner, no traceback ...
    for leaked in ("KFP Executor", "executor_output", "Task '", "Traceback", "KeyboardInterrupt"):
        assert leaked not in shown, leaked
    # ... it is all in the task log
    (log,) = (home / "logs").glob("tiny-local-*.log")
    logged = log.read_text()
    assert "KFP Executor" in logged and "trial-epochs" not in logged
    assert "Retrying" not in logged  # the runner did not start the interrupted task again

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny-local").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get(names.ROLE_TAG) == names.ROLE_STUDY]
    assert parent.info.status == "FAILED" and parent.data.tags[names.FAIL_REASON_TAG] == "interrupted (SIGINT)"
    assert {run.info.status for run in runs} <= {"FAILED", "FINISHED"}  # none left RUNNING; a trial may have finished first
    for run in runs:
        assert run.data.tags.get(names.FAIL_REASON_TAG) == ("interrupted (SIGINT)" if run.info.status == "FAILED" else None)

    # the same command resumes the study; Ctrl-C twice exits at once
    again = Terminal(config, env)
    try:
        again.until(rf"resuming study tiny-local \(MLflow run {parent.info.run_id}\)", timeout=120)
        again.until(r"round \d/2 · trials \d/4", timeout=60)
        again.type(CTRL_C)
        again.until(r"press Ctrl-C again to exit at once", timeout=30)
        pressed = time.monotonic()
        again.type(CTRL_C)
        assert again.wait(timeout=30) == 130
        assert time.monotonic() - pressed < 5.0
    finally:
        again.kill()
    assert "interrupted (SIGINT) again: exiting at once" in again.shown
    assert "failed" not in again.shown  # the interrupted trials are trained again, not counted failed
    assert "Traceback" not in again.shown
