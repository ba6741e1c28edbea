"""Benchmark of the NAS supernet's memory: the largest child (the paper's first child) of the three MSD tasks.

For each task of the paper (brain 4x155x240x240, heart 1x[90-130]x320x320, prostate 2x[11-24]x[256-384]^2,
batch sizes 2, 1 and 4, channels 16..256), the search space is resolved from training-image shapes that
span the stated ranges, and its largest child is measured:

1. Estimated (:func:`proxyhpo.networks.estimate_memory`, no network run): a training step at the largest
   patch and the paper's batch, with its terms, and one-shot inference of the largest whole image.
2. Measured on the CPU at a REDUCED size (each side of the largest patch divided by 4, rounded up to a
   multiple of 4; same architecture, same batch): the CPU profiler's peak of a training step (forward,
   backward, Adam) against the estimate at that size. The full sizes are not run on the CPU: a
   brain step at 144x240x240 needs ~16 GiB and minutes per step on two cores.
3. On a GPU, when one is at hand, at the full size: ``torch.cuda.max_memory_allocated`` of training steps
   of the largest child, its milliseconds per step, the estimate's ratio to it, and whether it fits the
   paper's 10.8 GB (an RTX 2080 Ti); and the peak of one-shot inference of the largest whole image.

4. The sets a NAS study of each task's shipped config (``examples/nas-<task>.yaml``) cuts from the task's
   MSD training cases (nested cross-validation, :data:`proxyhpo.config.nas.NAS_PROTOCOL`): per outer fold,
   the search-train cases, the search-validation cases that reward the controller and the untouched test
   part its cross-validated Dice is measured on; and the held-out internal test set. Counted with the
   planner's own functions (no data read).

Imports torch, MONAI and proxyhpo's config, data splitting and networks only (no mlflow, kfp or minio).

Usage: ``python bench/bench_nas.py [--quick] [--out bench/results/nas.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from proxyhpo.config import NasSearchSpace, NasSpaceConfig, StudyConfig
from proxyhpo.config.base import load_config
from proxyhpo.config.nas import NAS_PROTOCOL, check_protocol, nested_folds
from proxyhpo.data.prepare import split_cases
from proxyhpo.networks import Supernet, estimate_memory, memory_breakdown, path_parameter_count
from proxyhpo.networks.nas_encoding import largest

GIB = 2**30
PAPER_GPU_BYTES = 10.8e9  # "one RTX 2080Ti, 10.8GB GPU memory"

#: The paper's tasks: training-image shapes (D, H, W) spanning its stated ranges, modalities, batch size.
TASKS = {
    "brain": {"shapes": [(155, 240, 240)] * 4, "in_channels": 4, "batch": 2},
    "heart": {"shapes": [(d, 320, 320) for d in (90, 100, 110, 120, 130)], "in_channels": 1, "batch": 1},
    "prostate": {"shapes": [(11, 256, 256), (15, 320, 320), (20, 320, 320), (24, 384, 384)], "in_channels": 2, "batch": 4},
}


#: The MSD training cases (with labels) of the paper's tasks, and the shipped config of each.
MSD_TRAINING_CASES = {"brain": 484, "heart": 20, "prostate": 32}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def study_sets(name: str) -> dict:
    """The sets ``examples/nas-<name>.yaml`` cuts from the task's MSD training cases, counted by the planner's functions."""
    study = load_config(StudyConfig, EXAMPLES / f"nas-{name}.yaml")
    case_ids = [f"{name}_{i:03d}" for i in range(MSD_TRAINING_CASES[name])]
    search_ids, internal_test = split_cases(case_ids, study.data.holdout_fraction, study.data.split_seed)
    check_protocol(study.nas, len(search_ids))
    folds = nested_folds(search_ids, study.nas.folds, study.nas.validation_fraction, study.data.split_seed)
    row = {
        "config": f"examples/nas-{name}.yaml",
        "cases": len(case_ids),
        "internal_test": len(internal_test),
        "folds": [
            {"fold": k, "search_train": len(train), "search_validation": len(validation), "test": len(test)}
            for k, (train, validation, test) in enumerate(folds)
        ],
    }
    sizes = ", ".join(f"{f['search_train']}/{f['search_validation']}/{f['test']}" for f in row["folds"])
    print(f"  {name:8s} {len(case_ids)} cases: internal test {len(internal_test)}; per fold search-train/search-validation/test {sizes}")
    return row


def _space(task: dict) -> NasSearchSpace:
    return NasSearchSpace.from_shapes(NasSpaceConfig(), task["shapes"], in_channels=task["in_channels"], out_channels=1)


def _reduced(patch: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(max(4, 4 * math.ceil(s / 4 / 4)) for s in patch)  # type: ignore[return-value]


def _step_fn(net: Supernet, arch, x: torch.Tensor):
    used = net.parameter_names(arch)
    optimiser = torch.optim.Adam([p for n, p in net.named_parameters() if n in used], lr=1e-3, weight_decay=1e-5)  # the paper's child settings

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        net(x, arch).square().mean().backward()
        optimiser.step()

    return step


def _cpu_profiler_peak(fn) -> int | None:
    """Peak bytes of live tensors while ``fn`` runs (the CPU profiler's memory timeline), or None if unavailable."""
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import Action
    except ImportError:
        return None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        live += size if action in (Action.PREEXISTING, Action.CREATE) else -size if action == Action.DESTROY else 0
        peak = max(peak, live)
    return peak


def estimated(name: str, task: dict) -> dict:
    space = _space(task)
    arch = largest(space)
    batch = task["batch"]
    whole = tuple(max(s[k] for s in task["shapes"]) for k in range(3))
    terms = memory_breakdown(space, arch, batch)
    row = {
        "largest_child": arch.model_dump(mode="json"),
        "largest_child_name": arch.name,
        "patch_size": list(arch.patch_size),
        "batch": batch,
        "decisions": len(space.decisions),
        "log10_architectures": round(sum(math.log10(n) for n in space.option_counts), 2),
        "path_parameters": path_parameter_count(space, arch),
        "estimated_train_bytes": estimate_memory(space, arch, batch),
        "estimated_train_terms": terms,
        "largest_whole_image": list(whole),
        "estimated_inference_whole_image_bytes": estimate_memory(space, arch, 1, training=False, spatial_size=whole),
    }
    row["estimated_fits_10_8_GB"] = row["estimated_train_bytes"] <= PAPER_GPU_BYTES
    print(
        f"  {name:8s} patch {arch.patch_size} batch {batch}: estimated {row['estimated_train_bytes'] / GIB:6.2f} GiB a training step"
        f" (saved activations {terms['saved'] / GIB:5.2f}), inference of {whole} {row['estimated_inference_whole_image_bytes'] / GIB:5.2f} GiB"
    )
    return row


def cpu_reduced(name: str, task: dict, steps: int) -> dict:
    space = _space(task)
    arch = largest(space)
    batch = task["batch"]
    size = _reduced(arch.patch_size)
    torch.manual_seed(0)
    net = Supernet(space)
    x = torch.randn(batch, task["in_channels"], *size)
    step = _step_fn(net, arch, x)
    step()  # Adam's state exists from the first step on; oneDNN builds its kernels
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = _cpu_profiler_peak(step)
    estimate = estimate_memory(space, arch, batch, spatial_size=size)
    row = {
        "reduced_size": list(size),
        "batch": batch,
        "estimated_train_bytes": estimate,
        "measured_train_peak_bytes": peak,
        "estimated_over_measured": estimate / peak if peak else None,
        "step_seconds_median": sorted(times)[len(times) // 2],
    }
    ratio = f"{estimate / peak:5.2f}" if peak else "  n/a"
    print(f"  {name:8s} reduced {size} batch {batch}: estimated {estimate / 2**20:8.1f} MiB, measured {(peak or 0) / 2**20:8.1f} MiB, ratio {ratio}, {row['step_seconds_median']:.2f} s/step")
    return row


def gpu_full(name: str, task: dict, steps: int) -> dict:
    device = torch.device("cuda")
    space = _space(task)
    arch = largest(space)
    batch = task["batch"]
    torch.manual_seed(0)
    net = Supernet(space).to(device)
    x = torch.randn(batch, task["in_channels"], *arch.patch_size, device=device)
    step = _step_fn(net, arch, x)
    for _ in range(2):
        step()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    peak = int(torch.cuda.max_memory_allocated(device))
    # the supernet's weights all sit on the GPU; the estimate counts the path's (here: all of them)
    estimate = estimate_memory(space, arch, batch)
    whole = tuple(max(s[k] for s in task["shapes"]) for k in range(3))
    del x, step
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        net(torch.randn(1, task["in_channels"], *whole, device=device), arch)
    torch.cuda.synchronize(device)
    inference_peak = int(torch.cuda.max_memory_allocated(device))
    row = {
        "patch_size": list(arch.patch_size),
        "batch": batch,
        "max_memory_allocated_bytes": peak,
        "estimated_train_bytes": estimate,
        "estimated_over_measured": estimate / peak,
        "fits_10_8_GB": peak <= PAPER_GPU_BYTES,
        "step_ms_median": sorted(times)[len(times) // 2] * 1e3,
        "inference_whole_image": list(whole),
        "inference_max_memory_allocated_bytes": inference_peak,
        "inference_estimated_bytes": estimate_memory(space, arch, 1, training=False, spatial_size=whole),
    }
    print(
        f"  {name:8s} patch {arch.patch_size} batch {batch}: peak {peak / GIB:6.2f} GiB (estimate {estimate / peak:4.2f}x),"
        f" {row['step_ms_median']:8.1f} ms/step; inference {whole}: {inference_peak / GIB:5.2f} GiB"
    )
    del net
    torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one task on the CPU, fewer steps (smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "nas.json"))
    args = ap.parse_args()
    report: dict = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "note": (
            "largest child of each task's space (every op and skip, stride 2 where allowed, dilation 1, max patch), channels 16..256, "
            "fp32, Adam; training-image shapes span the paper's stated ranges (the paper cropped brain volumes to their non-zero box, "
            "so its brain patches were smaller than here); CPU measurements at a reduced size (sides / 4), GPU at full size"
        ),
        "paper_gpu_bytes": PAPER_GPU_BYTES,
    }
    print("Sets of a NAS study (nested cross-validation) of each task's shipped config:")
    report["sets"] = {"protocol": NAS_PROTOCOL, "tasks": {name: study_sets(name) for name in TASKS}}
    print("Estimated (no network run), the largest child at the paper's patch and batch:")
    report["estimated"] = {name: estimated(name, task) for name, task in TASKS.items()}
    cpu_tasks = ("prostate",) if args.quick else tuple(TASKS)
    print("CPU, reduced size (sides / 4), training step: estimate vs the profiler's peak:")
    report["cpu_reduced"] = {name: cpu_reduced(name, TASKS[name], 1 if args.quick else 2) for name in cpu_tasks}
    if torch.cuda.is_available():
        print("GPU, full size, training step: max_memory_allocated and time:")
        report["gpu_full"] = {name: gpu_full(name, task, 3 if args.quick else 10) for name, task in TASKS.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
