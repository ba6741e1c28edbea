"""`proxyhpo run CONFIG` in a pseudo-terminal of its own, and what a user saw of it.

stdlib ``pty``: the launcher is the session leader of a new terminal, so it and its task processes are the
terminal's foreground process group and a Ctrl-C typed into it reaches them all, as at a shell.
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

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
CTRL_C = b"\x03"


class Terminal:
    """`proxyhpo run CONFIG` in a pseudo-terminal of 30 rows by 120 columns; ``shown`` is its screen's text."""

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
        """Everything the terminal showed, escape sequences and carriage returns stripped."""
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

    def until_true(self, condition, what: str, timeout: float) -> None:
        """Keep reading the screen (a full pty would block the launcher) until ``condition()`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.5)
            if condition():
                return
            assert not self._reap(), f"exited {self.code} before {what}:\n{self.shown[-3000:]}"
        raise AssertionError(f"not within {timeout} s: {what}:\n{self.shown[-3000:]}")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float) -> int:
        """The launcher's exit code (130 after Ctrl-C), reading the screen meanwhile."""
        deadline = time.monotonic() + timeout
        while not self._reap():
            assert time.monotonic() < deadline, f"still running after {timeout} s:\n{self.shown[-3000:]}"
            self._read(0.1)
        self._read(0.1)
        return self.code  # type: ignore[return-value]

    def group_gone(self) -> bool:
        """Whether no process of the terminal's foreground group is left (the task processes included)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def close(self) -> None:
        """End the launcher, should it still run, and whatever of its group is left; close the terminal."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self._reap():
            os.waitpid(self.pid, 0)
        os.close(self.fd)
