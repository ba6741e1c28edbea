"""Benchmark of packed trials against one-by-one training, and of full against proxy networks.

Measured in one run, on the same machine:

1. Packing: trial-steps per second of K proxy U-Nets trained as one batched model
   (:class:`proxyhpo.training.ModelPack`, K = 4, 16) against the same K models stepped one after another
   (K = 1 packs), for proxy networks of 3 and 5 levels. On a CPU at a reduced patch (32³, 2 patches per
   step, labelled); on a GPU, when one is at hand, at the paper's 96³ with batch 2 (the batch is ours: the paper states none).
2. End to end: ``run_trials`` on synthetic volumes, 4 trials packed against the same 4 one by one:
   device seconds per trial and the fraction of step time spent waiting for data.
3. Full versus proxy network: step time and peak memory at the paper's patch sizes (96³ spleen,
   128×128×48 prostate; batch 2, ours): on a GPU with peak allocated memory; on the CPU with each network in
   its own process for its peak resident memory (and at a reduced 48³ patch in-process, labelled).

Usage: ``python bench/bench_training.py [--quick] [--out bench/results/training.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from proxyhpo.config import DataItem, HUWindow, HyperParameters, NetworkConfig, Recipe, TrialPlan, TrialSpec
from proxyhpo.networks import build_network, count_parameters
from proxyhpo.training import ModelPack, run_trials

OPTIMIZERS = ("adam", "rmsprop", "adamax", "novograd")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pack(cfg: NetworkConfig, k: int, device: torch.device) -> ModelPack:
    specs = [TrialSpec(trial_id=f"m{i}", hyperparameters=HyperParameters(lr=1e-3 * (1 + i % 3), optimizer=OPTIMIZERS[i % 4]), network=cfg, seed=i) for i in range(k)]
    return ModelPack(specs, device=device)


def _batch(n: int, patch: tuple[int, int, int], device: torch.device, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.rand(n, 1, *patch, generator=g).to(device)
    return x, (x > 0.6).float()


def _timed_step(pack: ModelPack, batches, step: int, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    pack.train_step(batches, step=step)
    _sync(device)
    return time.perf_counter() - t


def step_seconds(cfg: NetworkConfig, k: int, patch, n: int, device: torch.device, steps: int, warmup: int = 2) -> float:
    """Median seconds of one step of a K-model pack (every model on its own batch)."""
    pack = _pack(cfg, k, device)
    batches = {i: _batch(n, patch, device, i) for i in range(k)}
    times = [_timed_step(pack, batches, s + 1, device) for s in range(warmup + steps)]
    return float(np.median(times[warmup:]))


def paired_step_seconds(cfg: NetworkConfig, k: int, patch, n: int, device: torch.device, steps: int) -> tuple[float, float]:
    """Median step seconds of a 1-model and a K-model pack, measured alternately so that load from
    other processes on the machine hits both alike."""
    single, packed = _pack(cfg, 1, device), _pack(cfg, k, device)
    b1 = {0: _batch(n, patch, device, 0)}
    bk = {i: _batch(n, patch, device, i) for i in range(k)}
    t1, tk = [], []
    for s in range(2 + steps):
        a, b = _timed_step(single, b1, s + 1, device), _timed_step(packed, bk, s + 1, device)
        if s >= 2:
            t1.append(a)
            tk.append(b)
    return float(np.median(t1)), float(np.median(tk))


def bench_packing(device: torch.device, patch, n: int, ks, levels, steps: int) -> dict:
    out = {}
    for lv in levels:
        cfg = NetworkConfig.proxy(lv)
        row = {}
        for k in ks:
            single, t = paired_step_seconds(cfg, k, patch, n, device, steps)
            row[f"k{k}"] = {
                "one_by_one_ms_per_trial_step": single * 1e3,
                "packed_ms_per_trial_step": t / k * 1e3,
                "one_by_one_trial_steps_per_s": 1.0 / single,
                "packed_trial_steps_per_s": k / t,
                "speedup_vs_one_by_one": (k / t) * single,
            }
            print(f"  {cfg.name} K={k:2d}: {t / k * 1e3:8.2f} ms/trial-step vs {single * 1e3:8.2f} one by one -> {(k / t) * single:5.2f}x")
        out[cfg.name] = row
    return out


def full_vs_proxy(device: torch.device, patches: dict, n: int, steps: int) -> dict:
    out = {}
    for label, patch in patches.items():
        row = {}
        for cfg in (NetworkConfig.full(), NetworkConfig.proxy(5), NetworkConfig.proxy(4), NetworkConfig.proxy(3)):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t = step_seconds(cfg, 1, patch, n, device, steps, warmup=1)
            peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
            row[cfg.name] = {"step_ms": t * 1e3, "peak_mem_bytes": peak, "parameters": count_parameters(build_network(cfg))}
            print(f"  {label} {cfg.name:9s}: {t * 1e3:9.1f} ms/step" + (f", peak {peak / 2**20:8.1f} MiB" if peak else ""))
        for name in ("proxy-L5", "proxy-L4", "proxy-L3"):
            row[f"full_over_{name}_step_time"] = row["full"]["step_ms"] / row[name]["step_ms"]
            if row["full"]["peak_mem_bytes"]:
                row[f"full_over_{name}_peak_mem"] = row["full"]["peak_mem_bytes"] / row[name]["peak_mem_bytes"]
        out[label] = row
    return out


def _cpu_step_and_peak_rss(cfg_json: str, patch, n: int, steps: int, queue) -> None:
    """Child process: one network's step time and the process's peak resident memory (Linux ru_maxrss, KiB)."""
    import resource

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = NetworkConfig.model_validate_json(cfg_json)
    t = step_seconds(cfg, 1, tuple(patch), n, torch.device("cpu"), steps, warmup=1)
    queue.put((t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def cpu_full_vs_proxy_paper_sizes(patches: dict, n: int, steps: int) -> dict:
    """Full versus proxy U-Nets at the paper's patch sizes on the CPU; each network in its own process, so
    its peak resident memory is its own."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    out = {}
    for label, patch in patches.items():
        row = {}
        for cfg in (NetworkConfig.full(), NetworkConfig.proxy(5), NetworkConfig.proxy(3)):
            queue = context.Queue()
            child = context.Process(target=_cpu_step_and_peak_rss, args=(cfg.model_dump_json(), patch, n, steps, queue))
            child.start()
            t, peak = queue.get()
            child.join()
            row[cfg.name] = {"step_ms": t * 1e3, "peak_rss_bytes": peak, "parameters": count_parameters(build_network(cfg))}
            print(f"  {label} {cfg.name:9s}: {t * 1e3:9.1f} ms/step, peak RSS {peak / 2**20:8.1f} MiB")
        for name in ("proxy-L5", "proxy-L3"):
            row[f"full_over_{name}_step_time"] = row["full"]["step_ms"] / row[name]["step_ms"]
            row[f"full_over_{name}_peak_rss"] = row["full"]["peak_rss_bytes"] / row[name]["peak_rss_bytes"]
        out[label] = row
    return out


def _sphere_cases(folder: Path, n: int, size: int) -> list[DataItem]:
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    items = []
    for c in range(n):
        r = rng.uniform(size * 0.15, size * 0.28)
        mask = np.linalg.norm(grid - rng.uniform(r + 1, size - r - 1, 3), axis=-1) <= r
        img = rng.normal(0, 25, (size,) * 3).astype(np.float32) + 120 * mask
        ip, lp = folder / f"c{c}.nii.gz", folder / f"c{c}_seg.nii.gz"
        nib.save(nib.Nifti1Image(img, np.eye(4)), ip)
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4), dtype=np.uint8), lp)
        items.append(DataItem(image=str(ip), label=str(lp)))
    return items


def end_to_end(device: torch.device, size: int, patch, epochs: int, k: int = 4) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cases = _sphere_cases(Path(tmp), 6, size)
        recipe = Recipe(
            name="bench", intensity=HUWindow(a_min=-57, a_max=164), patch_size=patch, num_samples=2,
            roi_size=(size,) * 3, sw_batch_size=1, crop_foreground=False,
        )
        trials = [TrialSpec(trial_id=f"t{i}", hyperparameters=HyperParameters(lr=1e-3, optimizer=OPTIMIZERS[i % 4], intensity_shift_prob=0.5), seed=i) for i in range(k)]
        out = {}
        for pack in (1, k):
            plan = TrialPlan(recipe=recipe, train=cases[:4], val=cases[4:], epochs=epochs, trials=trials, pack_size=pack, device=device.type, num_workers=0)
            t = time.perf_counter()
            res = run_trials(plan, progress=False)
            wall = time.perf_counter() - t
            hours = [r.gpu_hours if device.type == "cuda" else r.process_hours for r in res]
            out[f"pack{pack}"] = {
                "wall_seconds_all_trials": wall,
                "device_seconds_per_trial": float(np.mean(hours)) * 3600,
                "data_wait_fraction": float(np.mean([r.data_wait_fraction for r in res])),
                "all_complete": all(r.state.value == "COMPLETE" for r in res),
            }
            print(f"  run_trials pack_size={pack}: {wall:6.1f} s for {k} trials, data wait {out[f'pack{pack}']['data_wait_fraction']:.1%}")
        out["device_seconds_saved_ratio"] = out["pack1"]["device_seconds_per_trial"] / out[f"pack{k}"]["device_seconds_per_trial"]
        out["setup"] = {"volume": size, "patch": list(patch), "epochs": epochs, "trials": k, "train_volumes": 4, "val_volumes": 2}
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and sizes (smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "training.json"))
    args = ap.parse_args()
    steps = 2 if args.quick else 5
    report: dict = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "note": "timings are medians of steps; on a shared machine CPU numbers vary with other load",
        "targets": {"gpu_packed_k16_speedup_vs_one_by_one": 4.0, "gpu_data_wait_fraction_max": 0.10},
    }
    cpu = torch.device("cpu")
    print("CPU packing (reduced: 32^3 patches, 2 per step):")
    report["cpu_packing"] = {
        "note": "reduced size for CPU: patch 32^3, 2 patches per step",
        **bench_packing(cpu, (32, 32, 32), 2, (1, 4) if args.quick else (1, 4, 16), (3,) if args.quick else (3, 5), steps),
    }
    print("CPU end to end (run_trials, 48^3 volumes, 32^3 patches):")
    report["cpu_end_to_end"] = end_to_end(cpu, 48, (32, 32, 32), 1 if args.quick else 2)
    print("CPU full vs proxy (reduced: 48^3 patches, batch 2; no peak memory on CPU):")
    report["cpu_full_vs_proxy"] = {"note": "reduced size for CPU: 48^3, batch 2", **full_vs_proxy(cpu, {"reduced_48": (48, 48, 48)}, 2, 1 if args.quick else 2)}
    print("CPU full vs proxy at the paper's patch sizes (batch 2, one process per network for its peak RSS):")
    report["cpu_full_vs_proxy_paper_sizes"] = cpu_full_vs_proxy_paper_sizes(
        {"spleen_96": (96, 96, 96), "prostate_128x128x48": (128, 128, 48)}, 2, 1 if args.quick else 2
    )
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        print("GPU packing (96^3, batch 2):")
        report["gpu_packing"] = bench_packing(gpu, (96, 96, 96), 2, (1, 4, 16, 32), (3, 5), 10)
        print("GPU end to end (run_trials, 128^3 volumes, 96^3 patches):")
        report["gpu_end_to_end"] = end_to_end(gpu, 128, (96, 96, 96), 3, k=16)
        print("GPU full vs proxy (paper's patch sizes, batch 2):")
        report["gpu_full_vs_proxy"] = full_vs_proxy(gpu, {"spleen_96": (96, 96, 96), "prostate_128x128x48": (128, 128, 48)}, 2, 10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
