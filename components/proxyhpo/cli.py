"""The ``proxyhpo`` command. It only parses arguments and calls the library.

Bad input (:class:`proxyhpo.errors.InputError`) ends with exit code 2 and one line on stderr that
names the file and the fix; nothing half-written is left behind because every writer is atomic.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from proxyhpo.config import config_error, selection_methods
from proxyhpo.registry import NETWORK_FAMILIES, SEARCH_STRATEGIES, SIMILARITY_METRICS, STUDY_PIPELINES
from proxyhpo import __version__
from proxyhpo.errors import InputError, ProxyHPOError, outward_error, scrub_credentials
from proxyhpo.signals import EXIT_TERMINATED, Terminated

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the help says it already or there is none to say (None, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default is argparse.SUPPRESS or action.required:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """The ``proxyhpo`` parser; its subcommands' parsers are of this class too, so every one shows the defaults."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def _from_options(model: type[BaseModel], **options: object) -> BaseModel:
    """Build a config from command-line options; an invalid value is a :class:`ConfigError` naming the option."""
    try:
        return model(**options)
    except ValidationError as exc:
        location = exc.errors()[0]["loc"]
        option = "--" + str(location[0]).replace("_", "-") if location else "the options"
        raise config_error(exc, option, fix=f"pass a valid {option}") from None


def _is_s3(location: str) -> bool:
    return str(location).startswith("s3://")


def _check_local_out(out: str, option: str, *, local_only: bool = False, folder: bool = False) -> None:
    """Refuse an output path before any work: an ``s3://`` URL where only a local path works, a file in the way, no permission."""
    if _is_s3(out):
        if local_only:
            raise InputError(out, f"is an s3:// URL, but {option} of this command must be a local folder", "give a local path, then upload it (e.g. proxyhpo data push)")
        return
    target = Path(out).absolute()
    if folder and target.exists() and not target.is_dir():
        raise InputError(target, "is a file, not a folder", f"give {option} a folder path, or move the file away")
    if not folder and target.is_dir():
        raise InputError(target, "is a folder, not a file", f"give {option} a file path")
    if not folder:
        from proxyhpo.storage import check_regular_target

        check_regular_target(target)  # a device, FIFO or socket would be replaced by the atomic rename
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(ancestor, "is a file, not a folder", f"give {option} a path whose parent folders are folders")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(ancestor, "is not writable", f"give {option} a path in a folder you can write to")


def _check_data_root(root: str | None) -> None:
    """Refuse a ``--data-root`` that is not ``s3://bucket[/prefix]``: a cluster's pods cannot read this machine's folders."""
    from urllib.parse import urlparse

    if root is not None and (urlparse(root).scheme != "s3" or not urlparse(root).netloc):
        raise InputError("--data-root", f"is {root[:80]!r}, not an s3://bucket/prefix URL (the cluster's pods read data from the object store)", "give --data-root s3://<bucket>/<prefix>, e.g. s3://proxyhpo/datasets")


def _cmd_synth(args: argparse.Namespace) -> None:
    from proxyhpo.data.synthetic import write_synthetic_dataset

    from proxyhpo.config import SyntheticDataConfig

    _from_options(SyntheticDataConfig, cases=args.cases, size=args.size, seed=args.seed)  # the bounds a study's data.synthetic has
    _check_local_out(args.out, "--out", local_only=True, folder=True)
    path = write_synthetic_dataset(args.task, args.out, cases=args.cases, size=args.size, seed=args.seed, external=args.external, progress=True)
    print(path)


def _cmd_similarity(args: argparse.Namespace) -> None:
    from proxyhpo.config import SimilarityConfig
    from proxyhpo.data.msd import load_dataset
    from proxyhpo.similarity.proxy_data import compute_similarity, write_similarity

    config = _from_options(SimilarityConfig, patch=args.patch, device=args.device, include_self=not args.exclude_self)
    _check_local_out(args.out, "--out", folder=True)
    result = compute_similarity(load_dataset(args.dataset), config, metric=args.metric, crop=args.crop, progress=True)
    for path in write_similarity(result, args.out):
        print(path)


def _cmd_select(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from proxyhpo.config import DataConfig, SelectionConfig, SimilarityConfig
    from proxyhpo.data.msd import load_dataset
    from proxyhpo.similarity.proxy_data import select_proxy_data

    _from_options(DataConfig, dataset=args.dataset, val_fraction=args.val_fraction)  # the range a study's data.val_fraction allows
    selection = _from_options(SelectionConfig, method=args.method, budget=args.budget, seed=args.seed)
    similarity = _from_options(SimilarityConfig, patch=args.patch, device=args.device, include_self=not args.exclude_self)
    _check_local_out(args.out, "--out")
    manifest = select_proxy_data(load_dataset(args.dataset), selection, similarity, val_fraction=args.val_fraction, split_seed=args.seed, progress=True)
    manifest.write(args.out)
    table = Table(title=f"proxy data: {manifest.method}, budget {manifest.budget}")
    table.add_column("#", justify="right")
    table.add_column("case")
    table.add_column("mean similarity", justify="right")
    for rank, (case_id, score) in enumerate(zip(manifest.case_ids, manifest.scores), start=1):
        table.add_row(str(rank), case_id, "-" if score is None else f"{score:.4f}")
    Console(stderr=True).print(table)
    print(args.out)


def _cmd_data_push(args: argparse.Namespace) -> None:
    from proxyhpo.data.msd import push_dataset

    print(push_dataset(args.folder, args.url, progress=True))


def _cmd_train(args: argparse.Namespace) -> None:
    from proxyhpo.training.study_trials import train_from_file

    if args.out and _is_s3(args.out):  # trained locally, then uploaded whole through proxyhpo.storage
        import tempfile

        from proxyhpo import storage

        storage.split_s3_url(args.out)  # a malformed URL is refused before training, not after
        folder = tempfile.mkdtemp(prefix="proxyhpo-train-")
        try:
            (local,) = train_from_file(args.trial, out=Path(folder) / "results.json")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        try:
            storage.write_bytes(args.out, Path(local).read_bytes())
        except InputError as exc:  # the results stay: hours of training are not deleted with the folder
            raise type(exc)(exc.path, f"{exc.problem}; the results are kept in {folder}", f"{exc.fix}, then upload {local}") from None
        shutil.rmtree(folder, ignore_errors=True)
        print(args.out)
        return
    if args.out:
        _check_local_out(args.out, "--out")
    for path in train_from_file(args.trial, out=args.out):
        print(path)


def _cmd_run(args: argparse.Namespace) -> None:
    from proxyhpo.launch import run_study

    run_study(args.config, local=not args.host, host=args.host, namespace=args.namespace, kind=args.pipeline, fresh=args.fresh, resume=args.resume)


def _cmd_trust(args: argparse.Namespace) -> int:
    from proxyhpo.launch import run_study

    summary = run_study(args.config, local=not args.host, host=args.host, namespace=args.namespace, kind="trust")
    if args.host:  # submitted: the verdict comes when the run ends, on its run page and in MLflow
        return 0
    verdict = summary.get("verdict") or {}
    print(verdict.get("message", "no verdict: the correlation is undefined (see the report)"))
    return 0 if verdict.get("passed") else 1


def _cmd_report(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    from proxyhpo.analysis.study_report import render_report

    text = render_report(args.experiment)
    if args.markdown:
        print(text, end="")
    else:
        Console().print(Markdown(text))


def _cmd_status(args: argparse.Namespace) -> None:
    from proxyhpo.status import study_status

    print("\n".join(study_status(args.experiment, limit=args.limit)))


def _cmd_segment(args: argparse.Namespace) -> None:
    from proxyhpo.export.segment import segment_images

    outs = {image: Path(args.out_dir) / (Path(image).name.removesuffix(".gz").removesuffix(".nii") + "_mask.nii.gz") for image in args.images}
    seen: dict[Path, str] = {}
    for image, out in outs.items():  # two inputs of one name would write one mask, the second over the first
        if out in seen:
            raise InputError(image, f"and {seen[out]} would both be written to {out}", "segment images of the same file name into separate --out-dir folders")
        seen[out] = image
    for image, out in segment_images(args.model, outs, device=args.device).items():
        print(f"{image} -> {out}")


def _cmd_export(args: argparse.Namespace) -> None:
    from proxyhpo.export.publish import export_run

    folder = export_run(args.run_id, args.out)
    print(f"MONAI bundle of run {args.run_id}: {folder} (python -m monai.bundle run --config_file configs/inference.json, in that folder)")


def _cmd_bench_search(args: argparse.Namespace) -> None:
    from proxyhpo.config.search_bench import load_search_bench
    from proxyhpo.search.bench import run_search_bench

    if args.table is not None:
        _bench_search_table(args)
        return
    if args.config is None:
        raise InputError("proxyhpo bench search", "needs a bench config, or --table TABLE", "give CONFIG (see bench/search.yaml) or --table (see bench/search-table.yaml)")
    config = load_search_bench(args.config)
    for option, key, fix in (("--seeds", "seeds", "give distinct seeds >= 0"), ("--strategies", "strategies", "give distinct registered strategies")):
        if getattr(args, key) is not None:
            try:
                config = type(config).model_validate(config.model_dump() | {key: getattr(args, key)})
            except ValidationError as exc:
                raise config_error(exc, option, fix=fix) from None
    _check_local_out(args.out, "--out", local_only=True, folder=True)
    run_search_bench(config, args.out)
    print(Path(args.out) / "search.json")


def _bench_search_table(args: argparse.Namespace) -> None:
    """``proxyhpo bench search [CONFIG] --table TABLE``: every strategy replayed on a recorded table."""
    from proxyhpo.config import load_yaml, parse_config
    from proxyhpo.config.search_bench import TableSearchConfig
    from proxyhpo.search.bench import run_table_bench

    config = parse_config(TableSearchConfig, load_yaml(args.config), args.config) if args.config else TableSearchConfig()
    if args.seeds is not None:
        if len(args.seeds) != 1 or args.seeds[0] < 1:
            raise InputError("--seeds", "with --table is the number of searches per strategy", "give one number >= 1, e.g. --seeds 200")
        config = config.model_copy(update={"seeds": args.seeds[0]})
    if args.strategies is not None:
        config = config.model_copy(update={"strategies": tuple(args.strategies)})
    _check_local_out(args.out, "--out", local_only=True, folder=True)
    summary = run_table_bench(args.table, config, args.out, default=args.default)
    print(Path(args.out) / f"search-table-{Path(args.table).stem.removeprefix('table-')}.json")
    for name, entry in summary["strategies"].items():
        print(f"{name:<16} " + "  ".join(f"{row['budget_trials']:g}: {row['median']:.4f}" for row in entry["regret"]))


def _cmd_bench_table(args: argparse.Namespace) -> None:
    from proxyhpo.config.search_bench import load_table_config
    from proxyhpo.search.table import record_table

    config = load_table_config(args.config)
    _check_local_out(args.out, "--out", local_only=True)
    if args.merge:
        from proxyhpo.search.table import merge_tables

        merge_tables(args.merge, args.out)
    else:
        seeds = f" --seed {' '.join(map(str, args.seed))}" if args.seed else ""
        record_table(config, args.out, only_seeds=args.seed, command=f"proxyhpo bench table {args.config} --out {args.out}{seeds}")
    print(args.out)


#: What ``proxyhpo plugins`` lists: each kind of plug-in and where a config names it.
PLUGIN_KINDS = {
    "metrics": (SIMILARITY_METRICS, "selection.method (NAME or NAME+labelcrop), proxyhpo similarity --metric"),
    "strategies": (SEARCH_STRATEGIES, "search.strategy, proxyhpo bench search --strategies"),
    "networks": (NETWORK_FAMILIES, "training.network_family, a trial plan's network.family"),
    "pipelines": (STUDY_PIPELINES, "proxyhpo run --pipeline, proxyhpo compile --pipeline"),
}


def _cmd_plugins(args: argparse.Namespace) -> None:
    for kind in [args.kind] if args.kind else PLUGIN_KINDS:
        registry, where = PLUGIN_KINDS[kind]
        print(f"{kind} ({where}):")
        width = max(len(name) for name in registry.names())
        for entry in registry.entries():
            print(f"  {entry.name:<{width}}  {entry.description}")


def _cmd_compile(args: argparse.Namespace) -> None:
    from proxyhpo.compile import compile_pipelines

    _check_local_out(args.out, "--out", local_only=True, folder=True)
    _check_data_root(args.data_root)
    for path in compile_pipelines(args.out, args.studies, kind=args.pipeline, data_root=args.data_root, kfp_target=args.kfp_target):
        print(path)


def _cmd_upload(args: argparse.Namespace) -> None:
    from proxyhpo.upload import upload_shipped

    _check_data_root(args.data_root)
    for name in upload_shipped(args.host, namespace=args.namespace, data_root=args.data_root, kfp_target=args.kfp_target, multi_user=args.multi_user):
        print(name)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from proxyhpo.deploy import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``proxyhpo`` command."""
    parser = _Parser(
        prog="proxyhpo", description="Proxy data and proxy networks for hyper-parameter search in 3D segmentation, and the studies that show whether to trust them."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"proxyhpo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic phantom data set in the MSD layout")
    synth.add_argument("task", choices=["spleen", "prostate", "brain"], help="which MSD task's phantoms: spleen (one label), prostate (two), brain (three, four channels)")
    synth.add_argument("--out", required=True, help="folder to create")
    synth.add_argument("--cases", type=int, default=12, help="number of training cases to write")
    synth.add_argument("--size", type=int, default=64, help="in-plane matrix size")
    synth.add_argument("--seed", type=int, default=0, help="seed of the phantoms' shapes and intensities")
    synth.add_argument("--external", action="store_true", help="write the shifted external-validation domain")
    synth.set_defaults(func=_cmd_synth)

    similarity = sub.add_parser("similarity", help="all-pairs similarity of a data set's training cases")
    similarity.add_argument("dataset", help="MSD folder or dataset.json, local or s3://")
    similarity.add_argument("--metric", choices=SIMILARITY_METRICS.names(), default="mi", help=f"the similarity metric (default: mi). {SIMILARITY_METRICS.help()}")
    similarity.add_argument("--crop", choices=["label", "none"], default="none", help="crop each volume to its label's region first (label) or not")
    similarity.add_argument("--patch", type=int, default=96, help="side of the cubic patch every volume is resampled to")
    similarity.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the similarities are computed (auto: a GPU if there is one)")
    similarity.add_argument("--exclude-self", action="store_true", help="importance over the other cases only (default: all pairs, the self-pair included, as the paper)")
    similarity.add_argument("--out", required=True, help="folder for similarity.npy, cases.json, importance.csv")
    similarity.set_defaults(func=_cmd_similarity)

    select = sub.add_parser("select", help="choose the proxy data set and write its manifest")
    select.add_argument("dataset", help="MSD folder or dataset.json, local or s3://")
    select.add_argument("--method", choices=selection_methods(), required=True, help="a similarity metric, alone or NAME+labelcrop (on the label's region of interest), or random")
    select.add_argument("--budget", type=int, required=True, help="how many cases the proxy data set holds")
    select.add_argument("--seed", type=int, default=0, help="seed of a random draw and of the train/validation split")
    select.add_argument("--val-fraction", type=float, default=0.5, help="share of the chosen cases that validate (the paper: 0.5)")
    select.add_argument("--patch", type=int, default=96, help="side of the cubic patch every volume is resampled to for the similarity")
    select.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the similarities are computed (auto: a GPU if there is one)")
    select.add_argument("--exclude-self", action="store_true", help="importance over the other cases only (default: all pairs, the self-pair included, as the paper)")
    select.add_argument("--out", required=True, help="manifest.json to write")
    select.set_defaults(func=_cmd_select)

    data = sub.add_parser("data", help="data sets in the object store")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    push = data_sub.add_parser("push", help="validate a local MSD data set and upload it to s3://bucket/prefix (the chart's MinIO)")
    push.add_argument("folder", help="MSD folder or its dataset.json")
    push.add_argument("url", help="s3://bucket/prefix to upload to; a pipeline run's dataset field takes it")
    push.set_defaults(func=_cmd_data_push)

    train = sub.add_parser("train", help="run one trial or a pack of trials from a trial YAML")
    train.add_argument("trial", help="trial plan YAML")
    train.add_argument("--out", default=None, help="result JSON (default: beside the YAML)")
    train.set_defaults(func=_cmd_train)

    run = sub.add_parser("run", help="run a study's pipeline locally or on a Kubeflow cluster")
    run.add_argument("config", help="study config YAML")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run with kfp.local.SubprocessRunner (default)")
    where.add_argument("--host", default=None, help="Kubeflow Pipelines API URL")
    run.add_argument("--namespace", default="kubeflow", help="Kubeflow namespace (profile) of the run; the chart must be installed there")
    run.add_argument(
        "--fresh", action="store_true", help="start the study over; by default a local run resumes where an earlier start of the same study and config stopped"
    )
    run.add_argument(
        "--pipeline", default="hpo", choices=STUDY_PIPELINES.names(), help=f"the study pipeline (default: hpo). {STUDY_PIPELINES.help()}"
    )
    run.add_argument(
        "--resume", default=None, metavar="RUN",
        help="with --host: continue the stopped cluster run RUN (its MLflow parent run id, or its KFP run id; MLflow at MLFLOW_TRACKING_URI)",
    )
    run.set_defaults(func=_cmd_run)

    trust = sub.add_parser("trust", help="before a heavy search: does the proxy rank a small grid like all data and the full network?")
    trust.add_argument("config", help="study config YAML (its studies.trust section)")
    where = trust.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run with kfp.local.SubprocessRunner (default)")
    where.add_argument("--host", default=None, help="Kubeflow Pipelines API URL")
    trust.add_argument("--namespace", default="kubeflow", help="Kubeflow namespace (profile) of the run")
    trust.set_defaults(func=_cmd_trust)

    report = sub.add_parser("report", help="print a study's report from MLflow alone")
    report.add_argument("experiment", help="the study's name (its MLflow experiment), or a parent run id")
    report.add_argument("--markdown", action="store_true", help="print the Markdown source instead of rendering it")
    report.set_defaults(func=_cmd_report)

    status = sub.add_parser(
        "status", help="the running and finished studies of the store, from any shell: progress, best result, device-hours, ETA, how to resume"
    )
    status.add_argument("experiment", nargs="?", default=None, help="only this study (its MLflow experiment); default: every study of the store")
    status.add_argument("--limit", type=int, default=5, help="show the newest LIMIT study runs (default: 5)")
    status.set_defaults(func=_cmd_status)

    segment = sub.add_parser("segment", help="segment NIfTI volumes with an HPO study's final model (a MONAI bundle) or a NAS export")
    segment.add_argument(
        "model",
        help="a bundle (proxyhpo export) or NAS export folder: a local path, an MLflow URI (models:/STUDY/VERSION, runs:/RUN_ID/bundle) or s3://bucket/prefix",
    )
    segment.add_argument("images", nargs="+", help="NIfTI volumes to segment")
    segment.add_argument("--out-dir", default=".", help="where <image>_mask.nii.gz files are written (default: here)")
    segment.add_argument("--device", default="auto", help="auto, cpu or cuda")
    segment.set_defaults(func=_cmd_segment)

    export = sub.add_parser("export", help="write the MONAI bundle of a finished study's final model (from MLflow)")
    export.add_argument("run_id", help="the study's MLflow run id (or its final model's run)")
    export.add_argument("--out", required=True, help="the bundle's folder (replaced when it exists)")
    export.set_defaults(func=_cmd_export)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bench_search = bench_sub.add_parser(
        "search", help="random search, REINFORCE, REINFORCE + successive halving and Optuna TPE + Hyperband side by side on one trainer and budget"
    )
    bench_search.add_argument("config", nargs="?", default=None, help="bench config YAML (see bench/search.yaml); with --table, the replay's (see bench/search-table.yaml)")
    bench_search.add_argument("--table", default=None, help="replay the strategies on a recorded table (proxyhpo bench table) instead of training")
    bench_search.add_argument("--default", default=None, choices=SEARCH_STRATEGIES.names(), help="with --table: the strategy tested against random search and TPE (default: a study's default)")
    bench_search.add_argument("--out", default="bench/results", help="folder for search.json and search.png (default: bench/results)")
    bench_search.add_argument("--seeds", type=int, nargs="+", default=None, help="the seeds to run instead of the config's (e.g. --seeds 0); with --table, the number of searches per strategy")
    bench_search.add_argument(
        "--strategies", nargs="+", default=None, choices=SEARCH_STRATEGIES.names(), help=f"the strategies to run instead of the config's. {SEARCH_STRATEGIES.help()}"
    )
    bench_search.set_defaults(func=_cmd_bench_search)
    bench_table = bench_sub.add_parser("table", help="record a tabular search benchmark: a grid over the search space, every trial's validation and test Dice at every epoch")
    bench_table.add_argument("config", help="table config YAML (see bench/table-spleen.yaml)")
    bench_table.add_argument("--out", required=True, help="the table file to write (.npz); an unfinished one with the same config is continued")
    bench_table.add_argument("--seed", type=int, nargs="+", default=None, help="record only these of the grid's seeds (one process each, joined by --merge)")
    bench_table.add_argument("--merge", nargs="+", default=None, metavar="PART", help="join recordings of the same config holding different seeds into --out instead of recording")
    bench_table.set_defaults(func=_cmd_bench_table)

    plugins = sub.add_parser("plugins", help="list the registered similarity metrics, search strategies, network families and study pipelines")
    plugins.add_argument("kind", nargs="?", choices=list(PLUGIN_KINDS), help="only this kind (default: all)")
    plugins.set_defaults(func=_cmd_plugins)

    comp = sub.add_parser("compile", help="compile a study's pipeline, or every shipped pipeline, to YAML")
    comp.add_argument("studies", nargs="*", help="study config YAMLs (default: the shipped examples)")
    comp.add_argument("--out", default="build/pipelines", help="folder for the compiled pipeline YAMLs")
    comp.add_argument("--pipeline", default="hpo", choices=STUDY_PIPELINES.names(), help="the study pipeline compiled for the given studies (default: hpo)")
    comp.add_argument("--data-root", default=None, help="for a cluster: s3://bucket/datasets, where local data sets are pushed; the pipelines' data fields default there")
    comp.add_argument(
        "--kfp-target", default="latest", help="the KFP backend compiled for: 2.5 (Kubeflow 1.10) and newer; before 2.14 without final status or collected artifacts"
    )
    comp.set_defaults(func=_cmd_compile)

    upload = sub.add_parser("upload", help="upload every compiled pipeline to a Kubeflow cluster")
    upload.add_argument("--host", required=True, help="Kubeflow Pipelines API URL; credentials from KFP_TOKEN or KFP_COOKIES")
    upload.add_argument("--namespace", default="kubeflow", help="Kubeflow namespace (profile) the pipelines are uploaded to")
    upload.add_argument("--data-root", default=None, help="s3://bucket/datasets, where the examples' data sets are pushed; the pipelines' data fields default there")
    upload.add_argument("--kfp-target", default="latest", help="the KFP backend compiled for (2.5: Kubeflow 1.10; default: the newest)")
    upload.add_argument("--multi-user", action="store_true", help="multi-user Kubeflow: the pipelines belong to --namespace, the profile's")
    upload.set_defaults(func=_cmd_upload)

    from proxyhpo.deploy import add_arguments as add_deploy_arguments  # standard library only: the parser stays fast

    deploy = sub.add_parser("deploy", help="`make deploy`'s steps: --preflight checks, then chart, pipelines, experiments, URLs (--dry-run: print and write only)")
    add_deploy_arguments(deploy)
    deploy.set_defaults(func=_cmd_deploy)
    return parser


def _user_path(filename: object) -> str:
    """The path the user gave for a temporary one (``.NAME.XXXX.partial``: a file of
    :func:`proxyhpo.storage.atomic_output`, or a staging folder such as ``synth``'s, anywhere in the path)."""
    path = Path(os.fsdecode(filename))  # type: ignore[arg-type]
    parts = [
        part[1 : -len(".partial")].rsplit(".", 1)[0] if part.startswith(".") and part.endswith(".partial") and part.count(".") >= 3 else part
        for part in path.parts
    ]
    return str(Path(*parts))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # connection retries are proxyhpo's to report, as one line, not urllib3's
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="urllib3")
        # MLflow's store-migration notices and its download bars are not the user's business (nor a report's text)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported, which sets its loggers' level
        logging.getLogger("alembic").setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    previous = _stop_on_sigterm(args.command)
    try:
        code = args.func(args)
    except Terminated:  # SIGTERM: the block's clean-up ran (staging folders, temporary files removed)
        if args.command != "train":  # train's trials said so already, with the runs they closed
            print(f"proxyhpo {args.command}: terminated (SIGTERM); nothing half-written was kept", file=sys.stderr)
        return EXIT_TERMINATED
    except InputError as exc:
        print(f"proxyhpo {args.command}: error: {scrub_credentials(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # an output path that cannot be written (a file in the way, no permission, disk full)
        where = _user_path(exc.filename) if exc.filename else "an output path"
        print(f"proxyhpo {args.command}: error: {where}: {exc.strerror or exc}; fix: check the path and its permissions", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProxyHPOError as exc:
        print(f"proxyhpo {args.command}: error: {scrub_credentials(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # the MLflow store or a server failed: one line; a bug: its traceback, credentials scrubbed
        from proxyhpo.paths import tracking_uri

        known = outward_error(exc, tracking_uri())
        text = f"proxyhpo {args.command}: error: {known}\n" if known else "".join(traceback.format_exception(exc))
        print(scrub_credentials(text), end="", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("proxyhpo: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return code or 0


def _stop_on_sigterm(command: str) -> Callable[..., Any] | int | None:
    """Make SIGTERM unwind ``command`` as Ctrl-C does (its clean-up runs); return the handler to restore, or None.

    ``run`` and ``trust`` stop their studies on a thread of their own (:func:`proxyhpo.signals.stop_on_signals`).
    """
    if command in ("run", "trust") or threading.current_thread() is not threading.main_thread():
        return None

    def _raise(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up must not be interrupted by a second one
        raise Terminated()

    return signal.signal(signal.SIGTERM, _raise)


if __name__ == "__main__":
    sys.exit(main())
