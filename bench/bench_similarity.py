"""Benchmark of the all-pairs similarity engines against the per-pair reference implementations.

Measured in one run, on the same volumes:

1. MI: ``mutual_information_matrix`` over all pairs vs ``sklearn.metrics.mutual_info_score`` on a
   sample of pairs (its per-pair cost is extrapolated); the ratio of per-pair costs.
2. LNCC: ``local_ncc_matrix`` over all pairs vs MONAI's ``LocalNormalizedCrossCorrelationLoss`` per pair.
3. Memory: peak RSS of a fresh process running MI on 500 volumes of 64³ (the target is < 4 GB), and
   LNCC throughput at 64³ on fewer volumes, extrapolated to 500.
4. On CUDA only: MI pairs/s at 96³ and the extrapolated time for 1000 volumes.

The sampled reference pairs are also compared with the engines' entries, so a fast wrong answer shows.

Timing: the engines run ``repeats`` times over all pairs and each sampled reference pair is timed on
its own; ``speedup`` is best per-pair cost over best per-pair cost, ``speedup_median`` the same with
medians. On a shared machine other processes slow whichever side runs while they are busy; the best
times are the least disturbed, and the load averages in the JSON say how busy the machine was.

Usage: ``python bench/bench_similarity.py [--quick] [--out bench/results/similarity.json]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from proxyhpo.similarity import local_ncc_matrix, mutual_information_matrix

TARGETS = {"mi_speedup": 50.0, "ncc_speedup": 10.0, "mi_500x64_peak_rss_gb": 4.0, "gpu_mi_pairs_per_s_96": 20000.0}


def smooth_volumes(n: int, size: int, seed: int) -> np.ndarray:
    """Realistic-looking volumes: low-frequency structure (blurred coarse noise) plus fine texture, in [0, 1].

    Coarse noise is blurred at low resolution and upsampled, which is much cheaper than blurring at
    full size and gives organ-like blobs; a little fine blurred noise adds texture.
    """
    rng = np.random.default_rng(seed)
    coarse = max(size // 4, 4)
    zoom = size / coarse
    out = np.empty((n, size, size, size), dtype=np.float32)
    grid = (np.arange(size) / zoom).clip(0, coarse - 1)
    lo = np.floor(grid).astype(int)
    hi = np.minimum(lo + 1, coarse - 1)
    w = (grid - lo).astype(np.float32)
    for k in range(n):
        c = gaussian_filter(rng.random((coarse, coarse, coarse)), 1.5).astype(np.float32)
        # separable linear upsampling, axis by axis
        for axis in range(3):
            a, b = np.take(c, lo, axis=axis), np.take(c, hi, axis=axis)
            shape = [1, 1, 1]
            shape[axis] = size
            c = a + (b - a) * w.reshape(shape)
        v = c + 0.15 * gaussian_filter(rng.random((size, size, size), dtype=np.float32), 1.0)
        out[k] = (v - v.min()) / (v.max() - v.min())
    return out


def _pairs(n: int, count: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [tuple(sorted(rng.choice(n, 2, replace=False).tolist())) for _ in range(count)]  # type: ignore[misc]


def _best_and_median(times: list[float]) -> tuple[float, float]:
    return min(times), float(np.median(times))


def bench_mi(vols: np.ndarray, sample: int, device: str, repeats: int) -> dict:
    from sklearn.metrics import mutual_info_score

    n = vols.shape[0]
    npairs = n * (n + 1) // 2
    mutual_information_matrix(vols[:2], device=device)  # warm-up
    ours = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = mutual_information_matrix(vols, device=device)
        ours.append((time.perf_counter() - t0) / npairs)
    q = np.minimum(np.floor(vols.astype(np.float64) * 32), 31).astype(np.int64).reshape(n, -1)
    err, ref = 0.0, []
    for i, j in _pairs(n, sample, 1):
        t0 = time.perf_counter()
        value = mutual_info_score(q[i], q[j])
        ref.append(time.perf_counter() - t0)
        err = max(err, abs(value - m[i, j]))
    return _summary(n, vols.shape[1], npairs, ours, ref, "sklearn") | {"max_abs_diff_vs_sklearn": err}


def _summary(n: int, size: int, npairs: int, ours: list[float], ref: list[float], ref_name: str) -> dict:
    """Per-pair costs, best and median, of both sides; the speedup is best over best (see the module doc)."""
    ours_best, ours_median = _best_and_median(ours)
    ref_best, ref_median = _best_and_median(ref)
    return {
        "volumes": n,
        "size": size,
        "pairs": npairs,
        "repeats": len(ours),
        "seconds_per_pair": ours_best,
        "seconds_per_pair_median": ours_median,
        "pairs_per_s": 1.0 / ours_best,
        f"{ref_name}_sampled_pairs": len(ref),
        f"{ref_name}_seconds_per_pair": ref_best,
        f"{ref_name}_seconds_per_pair_median": ref_median,
        f"{ref_name}_pairs_per_s": 1.0 / ref_best,
        "speedup": ref_best / ours_best,
        "speedup_median": ref_median / ours_median,
    }


def bench_ncc(vols: np.ndarray, sample: int, device: str, repeats: int) -> dict:
    from monai.losses import LocalNormalizedCrossCorrelationLoss

    n = vols.shape[0]
    npairs = n * (n + 1) // 2
    local_ncc_matrix(vols[:2], device=device)  # warm-up
    ours = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = local_ncc_matrix(vols, device=device)
        if device != "cpu":
            torch.cuda.synchronize()
        ours.append((time.perf_counter() - t0) / npairs)
    loss = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=9, kernel_type="rectangular").to(device)
    t = torch.from_numpy(vols).to(device)
    loss(t[0][None, None], t[1][None, None])  # warm-up
    err, ref = 0.0, []
    for i, j in _pairs(n, sample, 2):
        t0 = time.perf_counter()
        value = -float(loss(t[i][None, None], t[j][None, None]))
        ref.append(time.perf_counter() - t0)
        err = max(err, abs(value - m[i, j]))
    return _summary(n, vols.shape[1], npairs, ours, ref, "monai") | {"max_abs_diff_vs_monai_float32": err}


def _memory_worker(n: int, size: int, device: str, queue: mp.Queue) -> None:
    """Runs in a fresh process so that ru_maxrss is this measurement's peak alone."""
    vols = smooth_volumes(n, size, seed=3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    m = mutual_information_matrix(vols, device=device)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    queue.put(
        {
            "volumes": n,
            "size": size,
            "pairs": n * (n + 1) // 2,
            "seconds": seconds,
            "pairs_per_s": n * (n + 1) / 2 / seconds,
            "input_gb": vols.nbytes / 1e9,
            "peak_rss_gb_before_mi": before * 1024 / 1e9,
            "peak_rss_gb": peak * 1024 / 1e9,
            "finite": bool(np.isfinite(m).all()),
        }
    )


def bench_memory(n: int, size: int, device: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_worker, args=(n, size, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (about a minute)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "similarity.json"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    cuda = torch.cuda.is_available()
    if args.quick:
        speed_n, speed_size, mi_sample, ncc_n, ncc_sample = 10, 48, 4, 6, 2
        mem_n, mem_size, ncc64_n = 100, 32, 8
        repeats = 2
    else:
        speed_n, speed_size, mi_sample, ncc_n, ncc_sample = 24, 96, 8, 12, 3
        mem_n, mem_size, ncc64_n = 500, 64, 16
        repeats = 3

    report: dict = {
        "schema_version": 1,
        "mode": "quick" if args.quick else "default",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__,
            "cuda": torch.cuda.get_device_name(0) if cuda else None,
            # Other processes on the machine skew CPU timings; the load tells a reader how quiet it was.
            "load_average_at_start": list(os.getloadavg()),
        },
        "targets": TARGETS,
    }

    def show(name: str, r: dict) -> None:
        print(f"{name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)

    vols = smooth_volumes(speed_n, speed_size, seed=1)
    report["cpu_mi"] = bench_mi(vols, mi_sample, "cpu", repeats)
    show("cpu_mi", report["cpu_mi"])
    report["cpu_ncc"] = bench_ncc(vols[:ncc_n], ncc_sample, "cpu", repeats)
    show("cpu_ncc", report["cpu_ncc"])
    # Both sides again on one thread: on a machine shared with other jobs, two-thread torch ops wait
    # on each other at every barrier, which hurts the engine's many mid-sized ops more than MONAI's
    # few large convolutions; one thread shows the algorithms without that interference.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    report["cpu_ncc_1_thread"] = bench_ncc(vols[:ncc_n], ncc_sample, "cpu", repeats)
    torch.set_num_threads(threads)
    show("cpu_ncc_1_thread", report["cpu_ncc_1_thread"])
    del vols

    report["cpu_mi_memory"] = bench_memory(mem_n, mem_size, "cpu")
    show("cpu_mi_memory", report["cpu_mi_memory"])
    small = smooth_volumes(ncc64_n, mem_size, seed=4)
    t0 = time.perf_counter()
    local_ncc_matrix(small, device="cpu")
    sec = time.perf_counter() - t0
    rate = ncc64_n * (ncc64_n + 1) / 2 / sec
    report["cpu_ncc_at_memory_size"] = {
        "volumes": ncc64_n,
        "size": mem_size,
        "pairs_per_s": rate,
        "extrapolated_hours_for_memory_n": mem_n * (mem_n + 1) / 2 / rate / 3600,
        "memory_n": mem_n,
    }
    show("cpu_ncc_at_memory_size", report["cpu_ncc_at_memory_size"])

    if cuda:
        gvols = smooth_volumes(64 if args.quick else 256, 96, seed=5)
        mutual_information_matrix(gvols[:4], device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        mutual_information_matrix(gvols, device="cuda")
        torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        n = gvols.shape[0]
        rate = n * (n + 1) / 2 / sec
        report["cuda_mi"] = {
            "volumes": n,
            "size": 96,
            "pairs_per_s": rate,
            "extrapolated_seconds_for_1000_volumes": 1000 * 1001 / 2 / rate,
        }
        show("cuda_mi", report["cuda_mi"])
        report["cuda_ncc"] = bench_ncc(gvols[:16], 4, "cuda", repeats)
        show("cuda_ncc", report["cuda_ncc"])

    report["ratios"] = {
        "mi_speedup_vs_sklearn": report["cpu_mi"]["speedup"],
        "ncc_speedup_vs_monai": report["cpu_ncc"]["speedup"],
        "ncc_speedup_vs_monai_1_thread": report["cpu_ncc_1_thread"]["speedup"],
    }
    report["targets_met"] = {
        "mi_speedup": report["cpu_mi"]["speedup"] >= TARGETS["mi_speedup"],
        "ncc_speedup": report["cpu_ncc"]["speedup"] >= TARGETS["ncc_speedup"],
        "mi_500x64_peak_rss_gb": (not args.quick)
        and report["cpu_mi_memory"]["peak_rss_gb"] < TARGETS["mi_500x64_peak_rss_gb"],
        "gpu_mi_pairs_per_s_96": (report["cuda_mi"]["pairs_per_s"] >= TARGETS["gpu_mi_pairs_per_s_96"]) if cuda else None,
    }
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    print("ratios:", json.dumps(report["ratios"]), "targets_met:", json.dumps(report["targets_met"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
