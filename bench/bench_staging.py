"""Benchmark of staging a data set from one S3 server: 16 task pods at once against one, and a pack's share.

What a round of 16 packs does to the chart's single MinIO, measured here against a real S3 server (SeaweedFS
``weed mini``, the test suite's server) on this machine:

1. ``one``: one stager downloads the whole data set (``load_dataset(url)``, what ``prepare data`` does).
2. ``sixteen_full``: 16 stagers at once, each the whole data set into its own home (every pack before this
   change: its own emptyDir, its own copy).
3. ``sixteen_packs``: 16 stagers at once, each only its pack's cases (``load_dataset(url, cases=...)``: a
   pack's training and validation cases; here ``--pack-cases`` of them, disjoint between packs).

Each stager is a fresh process with its own ``PROXYHPO_HOME`` (the pod's emptyDir) that times its own
``load_dataset``; the JSON holds every stager's seconds, the wall time of each wave, the bytes staged and
the throughput. Server and stagers share this machine's CPUs (the JSON records how many): on a cluster the
stagers run on other nodes and the server's disk and network are what saturate, so read the ratios as a
lower bound on contention, not a cluster's numbers.

Usage: ``nice -n 10 python bench/bench_staging.py [--cases 32] [--size 96] [--out bench/results/staging.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key"
STAGER = """
import json, sys, time
from proxyhpo.data.msd import load_dataset
cases = set(json.loads(sys.argv[2])) if sys.argv[2] != "all" else None
started = time.perf_counter()
dataset = load_dataset(sys.argv[1], cases=cases)
print(json.dumps({"seconds": time.perf_counter() - started, "cases": len(dataset.cases)}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_seaweedfs(folder: Path) -> tuple[subprocess.Popen, str]:
    """``weed mini`` (from the virtual environment, as the tests use it) on free local ports; returns (process, endpoint)."""
    weed = Path(sys.executable).parent / "weed"
    port = _free_port()
    ports = [_free_port() for _ in range(3)]
    command = [
        str(weed), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}", f"-master.port={ports[0]}",
        f"-volume.port={ports[1]}", f"-filer.port={ports[2]}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    process = subprocess.Popen(command, env=env, stdout=open(folder / "weed.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    from minio import Minio

    client = Minio(f"127.0.0.1:{port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.list_buckets()
            return process, f"http://127.0.0.1:{port}"
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"weed mini did not start: {(folder / 'weed.log').read_text()[-1000:]}") from None
            time.sleep(0.5)


def wave(url: str, homes: list[Path], cases: list[list[str] | None], env: dict[str, str]) -> dict:
    """Run one stager per home at once; return the wall time and every stager's own seconds."""

    def stage(home: Path, wanted: list[str] | None) -> dict:
        run_env = dict(env, PROXYHPO_HOME=str(home))
        result = subprocess.run([sys.executable, "-c", STAGER, url, json.dumps(wanted) if wanted else "all"], env=run_env, capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])

    started = time.perf_counter()
    with ThreadPoolExecutor(len(homes)) as pool:
        results = list(pool.map(stage, homes, cases))
    wall = time.perf_counter() - started
    staged = sum(path.stat().st_size for home in homes for path in (home / "data").rglob("*") if path.is_file())
    seconds = [r["seconds"] for r in results]
    return {
        "stagers": len(homes), "wall_s": round(wall, 3), "stager_s": [round(s, 3) for s in seconds],
        "stager_s_max": round(max(seconds), 3), "stager_s_median": round(sorted(seconds)[len(seconds) // 2], 3),
        "bytes_staged": staged, "mb_per_s_total": round(staged / 1e6 / wall, 2), "cases_per_stager": results[0]["cases"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=32, help="cases of the synthetic data set")
    parser.add_argument("--size", type=int, default=96, help="in-plane size of the phantoms")
    parser.add_argument("--pack-cases", type=int, default=2, help="cases one pack stages in the third wave")
    parser.add_argument("--stagers", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("bench/results/staging.json"))
    args = parser.parse_args()

    from proxyhpo.data.msd import push_dataset
    from proxyhpo.data.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="bench-staging-") as scratch:
        root = Path(scratch)
        (root / "weed").mkdir()
        process, endpoint = start_seaweedfs(root / "weed")
        try:
            env = dict(os.environ, PROXYHPO_S3_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
            os.environ.update({k: env[k] for k in ("PROXYHPO_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
            from proxyhpo.storage import s3_client

            s3_client().make_bucket(bucket_name="bench")
            local = write_synthetic_dataset("spleen", root / "phantoms", cases=args.cases, size=args.size, seed=0)
            url = push_dataset(local, "s3://bench/datasets/phantoms")
            from proxyhpo.data.msd import load_dataset

            pushed = load_dataset(local)
            ids = sorted(case.case_id for case in pushed.cases)
            dataset_bytes = sum(Path(path).stat().st_size for case in pushed.cases for path in (case.image, case.label))

            def homes(name: str, count: int) -> list[Path]:
                return [root / name / str(i) for i in range(count)]

            one = wave(url, homes("one", 1), [None], env)
            full = wave(url, homes("full", args.stagers), [None] * args.stagers, env)
            packs = [[ids[(i * args.pack_cases + j) % len(ids)] for j in range(args.pack_cases)] for i in range(args.stagers)]
            pack_wave = wave(url, homes("packs", args.stagers), packs, env)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)

    result = {
        "benchmark": "staging",
        "server": "SeaweedFS weed mini (one server, like the chart's one MinIO pod)",
        "data_set": {"cases": args.cases, "size": args.size, "bytes": dataset_bytes},
        "one": one,
        "sixteen_full": full,
        "sixteen_packs": pack_wave,
        "slowdown_sixteen_full_vs_one": round(full["wall_s"] / one["wall_s"], 2),
        "slowdown_sixteen_packs_vs_one": round(pack_wave["wall_s"] / one["wall_s"], 2),
        "bytes_sixteen_packs_vs_full": round(pack_wave["bytes_staged"] / full["bytes_staged"], 3),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict) or k == "data_set"}, indent=2))


if __name__ == "__main__":
    main()
