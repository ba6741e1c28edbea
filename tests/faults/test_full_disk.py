"""A write that runs out of room names the file it was writing, not "an output path" (issue 23)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# the file-size limit is the cheap, real stand-in for a full disk: the write fails mid-way without a file name
_WRITE_PAST_THE_LIMIT = """
import resource, signal, sys
from proxyhpo import storage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    storage.atomic_write_bytes(sys.argv[1], b"x" * 1_000_000)
except OSError as exc:
    print(exc.filename, exc.strerror, sep="|")
"""


def test_a_write_past_the_room_left_names_its_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "selection.json"
    done = subprocess.run([sys.executable, "-c", _WRITE_PAST_THE_LIMIT, str(target)], capture_output=True, text=True, timeout=60, check=True)
    filename, strerror = done.stdout.strip().split("|")
    assert filename == str(target) and strerror  # what the CLI's one line names
    assert not target.exists() and not list(target.parent.iterdir())  # nothing half-written left
