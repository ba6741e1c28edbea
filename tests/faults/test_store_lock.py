"""Launches at once on a fresh home: the first creation of the MLflow store is serialised by a lock (issue 23).

Before the lock, two ``proxyhpo run`` started milliseconds apart on a fresh ``PROXYHPO_HOME`` both ran
MLflow's schema migration on the new SQLite file, and one died with a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CREATE = "import sys; from proxyhpo.tracking.connection import ensure_experiment; print(ensure_experiment(sys.argv[1], sys.argv[2]))"


def test_three_first_launches_at_once_all_get_their_experiment(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen([sys.executable, "-c", CREATE, f"study-{i}", uri], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    for process, (out, err) in zip(processes, outcomes):
        assert process.returncode == 0, err[-2000:]
        assert out.strip(), err[-2000:]
    assert len({out.strip() for out, _ in outcomes}) == 3  # three experiments, one store
