"""A write that runs out of room names the file it was writing, not "an output path" (issue 23)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# the file-size limit is the cheap, real stand-in for a full disk: the write fails mid-way without a file name
_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
"""


def _os_error_past_the_limit(write: str, target: Path) -> tuple[str, str]:
    """Run ``write`` (Python that writes ``sys.argv[1]``) in a process limited to 64 KiB files; the filename and
    strerror of the OSError it raised."""
    script = _FILE_SIZE_LIMIT.format(limit=65536) + "from proxyhpo import storage\ntry:\n" + textwrap.indent(write.strip(), "    ")
    script += "\nexcept OSError as exc:\n    print(exc.filename, exc.strerror, sep='|')\n"
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120, check=True)
    filename, strerror = done.stdout.strip().split("|")
    return filename, strerror


def test_a_write_past_the_room_left_names_its_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "selection.json"
    filename, strerror = _os_error_past_the_limit('storage.atomic_write_bytes(sys.argv[1], b"x" * 1_000_000)', target)
    assert filename == str(target) and strerror  # what the CLI's one line names
    assert not target.exists() and not list(target.parent.iterdir())  # nothing half-written left


def test_a_torch_save_past_the_room_left_is_an_os_error_naming_its_file(tmp_path: Path) -> None:
    # torch's zip writer says "[enforce fail at inline_container.cc] unexpected pos", a RuntimeError naming nothing
    target = tmp_path / "model" / "weights.pt"
    save = """
import torch
with storage.atomic_output(sys.argv[1]) as partial:
    torch.save({"weights": torch.zeros(100_000)}, partial)
"""
    filename, strerror = _os_error_past_the_limit(save, target)
    assert filename == str(target) and strerror in ("No space left on device", "the write failed (torch.save)")
    assert not target.exists() and not list(target.parent.iterdir())


def test_synth_past_the_room_left_is_one_line_naming_the_volume(tmp_path: Path) -> None:
    out = tmp_path / "phantoms"
    limited = _FILE_SIZE_LIMIT.format(limit=20000) + "from proxyhpo.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    done = subprocess.run(
        [sys.executable, "-c", limited, "synth", "spleen", "--cases", "2", "--size", "48", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    # the volume as the user will find it (its staging folder is named for what it becomes)
    assert line.startswith(f"proxyhpo synth: error: {out}/imagesTr/spleen_") and ".nii.gz: File too large" in line, line
    assert not out.exists() and not [path for path in tmp_path.iterdir() if path.name != "phantoms"]  # nothing half-written
