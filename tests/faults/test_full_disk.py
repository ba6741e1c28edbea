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


_SAVE_PAST_THE_LIMIT = """
import resource, signal, sys, torch
from proxyhpo import storage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    with storage.atomic_output(sys.argv[1]) as partial:
        torch.save({"weights": torch.zeros(100_000)}, partial)
except OSError as exc:
    print(exc.filename, exc.strerror, sep="|")
"""


def test_a_torch_save_past_the_room_left_is_an_os_error_naming_its_file(tmp_path: Path) -> None:
    # torch's zip writer says "[enforce fail at inline_container.cc] unexpected pos", a RuntimeError naming nothing
    target = tmp_path / "model" / "weights.pt"
    done = subprocess.run([sys.executable, "-c", _SAVE_PAST_THE_LIMIT, str(target)], capture_output=True, text=True, timeout=120, check=True)
    filename, strerror = done.stdout.strip().split("|")
    assert filename == str(target) and strerror in ("No space left on device", "the write failed (torch.save)")
    assert not target.exists() and not list(target.parent.iterdir())


def test_synth_past_the_room_left_is_one_line_naming_the_volume(tmp_path: Path) -> None:
    out = tmp_path / "phantoms"
    limited = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        " resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); from proxyhpo.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", limited, "synth", "spleen", "--cases", "2", "--size", "48", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    # the volume as the user will find it (its staging folder is named for what it becomes)
    assert line.startswith(f"proxyhpo synth: error: {out}/imagesTr/spleen_") and ".nii.gz: File too large" in line, line
    assert not out.exists() and not [path for path in tmp_path.iterdir() if path.name != "phantoms"]  # nothing half-written
