"""The one compile path: a registered study pipeline, built for a study config, compiled to the YAML a cluster runs.

Everything that needs a compiled pipeline comes through :func:`compile_study`: ``proxyhpo compile``, a local
run (which runs the compiled YAML, not the Python it came from), a run submitted to a cluster, ``proxyhpo
upload`` and ``make deploy``. The builders live in ``pipelines/`` and are found through
:data:`proxyhpo.registry.STUDY_PIPELINES`, imported only here and only when something is compiled.

The images a compiled pipeline references are this process's (:mod:`proxyhpo.kfp.image`, read from the
environment when first imported); ``make deploy`` compiles for the images it pushed by passing
:class:`PipelineImages` instead.

Example:
    >>> from proxyhpo.catalogue import shipped_study
    >>> compile_study(shipped_study("demo"), "build/hpo-demo.yaml", "hpo")  # doctest: +SKIP
    PosixPath('build/hpo-demo.yaml')
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxyhpo.registry import STUDY_PIPELINES

if TYPE_CHECKING:
    from pipelines.tasks import CaBundle
    from proxyhpo.config import StudyConfig
    from proxyhpo.kfp.target import KfpTarget

__all__ = ["PipelineImages", "pipeline_builder", "compile_study", "compile_pipelines"]


@dataclass(frozen=True)
class PipelineImages:
    """The two images a compiled pipeline's tasks run on: ``runtime`` (CUDA torch, the GPU tasks) and ``cpu``.

    Example:
        >>> PipelineImages.pushed("registry.example.org/ml", "0.1.0-abc1234").cpu
        'registry.example.org/ml/runtime-cpu:0.1.0-abc1234'
    """

    runtime: str
    cpu: str

    @classmethod
    def current(cls) -> PipelineImages:
        """This process's images (``PROXYHPO_IMAGE_*`` as they were when :mod:`proxyhpo.kfp.image` was imported)."""
        from proxyhpo.kfp.image import CPU_IMAGE, RUNTIME_IMAGE

        return cls(runtime=RUNTIME_IMAGE, cpu=CPU_IMAGE)

    @classmethod
    def pushed(cls, registry: str, tag: str | None = None, *, digests: str | os.PathLike[str] | None = None) -> PipelineImages:
        """The images ``make push`` pushed to ``registry`` under ``tag`` (default: the package version).

        Args:
            digests: the folder ``make push`` writes ``runtime.digest`` and ``runtime-cpu.digest`` into; a digest
                found there pins its image (``repo:tag@sha256:...``).

        Raises:
            ConfigError: a tag or digest that is not one.
        """
        from proxyhpo import __version__
        from proxyhpo.kfp.image import CPU_REPOSITORY, DEFAULT_REGISTRY, RUNTIME_REPOSITORY, image_reference

        registry = registry.rstrip("/") or DEFAULT_REGISTRY
        tag = tag or __version__

        def reference(repository: str) -> str:
            path = Path(digests) / f"{repository}.digest" if digests else None
            digest = path.read_text().strip() if path and path.is_file() else None
            return image_reference(registry, repository, tag, digest or None, variable=str(path))

        return cls(runtime=reference(RUNTIME_REPOSITORY), cpu=reference(CPU_REPOSITORY))


def pipeline_builder(kind: str = "hpo") -> Callable[[StudyConfig], Any]:
    """The function that builds study pipeline ``kind`` for a study config (:data:`~proxyhpo.registry.STUDY_PIPELINES`).

    Raises:
        ValueError: naming an unknown ``kind``, the closest registered one and every choice.
    """
    return STUDY_PIPELINES[kind]


def _use_images(spec: dict[str, Any], images: PipelineImages) -> None:
    """Point every executor of the pipeline ``spec`` at ``images`` instead of this process's images."""
    current = PipelineImages.current()
    swap = {current.runtime: images.runtime, current.cpu: images.cpu}
    for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
        container = executor.get("container") or {}
        if container.get("image") in swap:
            container["image"] = swap[container["image"]]


def on_a_fresh_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` on a new thread, its result returned and its exception raised here.

    For building pipelines: KFP calls ``inspect.stack()`` once for each resource setting of each task, and
    that maps every frame of the calling thread to its module by copying ``sys.modules``. Called deep in a
    launcher, a CLI or a test with torch, MONAI and MLflow loaded, a fifty-round pipeline took 12 s of CPU to
    build instead of 3; a fresh thread's stack holds only the compiler's own frames. The YAML is the same.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = function(*args, **kwargs)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=getattr(function, "__name__", "compile"))
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def compile_study(
    study: StudyConfig, out: str | os.PathLike[str], kind: str = "hpo", *, images: PipelineImages | None = None, kfp_target: KfpTarget | str | None = None,
    ca_bundle: CaBundle | None = None,
) -> Path:
    """Compile study pipeline ``kind`` for ``study`` to the YAML file ``out`` (atomically), identical executors merged.

    Args:
        study: the study config; it fixes the pipeline's shape and gives its run parameters' defaults.
        out: the YAML file written.
        kind: a :data:`~proxyhpo.registry.STUDY_PIPELINES` name.
        images: the images the tasks run on (default: this process's, :meth:`PipelineImages.current`).
        kfp_target: the KFP backend it is compiled for (:mod:`proxyhpo.kfp.target`; default: the newest).
        ca_bundle: a private CA bundle every task trusts (:class:`pipelines.tasks.CaBundle`; default: the images' CAs).

    Returns:
        ``out``, as a path.

    Raises:
        ValueError: naming an unknown ``kind``.
        ConfigError: when the pipeline needs a feature ``kfp_target`` does not run (a study setting such as a node affinity).
    """
    import yaml
    from kfp import compiler

    from pipelines.tasks import compiling_for, trusting
    from proxyhpo.kfp.compact import deduplicate
    from proxyhpo.kfp.target import KfpTarget, check_target
    from proxyhpo.storage import atomic_write_text

    target = kfp_target if isinstance(kfp_target, KfpTarget) else KfpTarget.parse(kfp_target or "latest")
    builder = pipeline_builder(kind)

    def build(path: str) -> None:
        with compiling_for(target), trusting(ca_bundle):
            compiler.Compiler().compile(builder(study), path)

    with tempfile.TemporaryDirectory() as folder:
        yaml_path = Path(folder) / "pipeline.yaml"  # the compiler picks the format from the suffix
        on_a_fresh_thread(build, str(yaml_path))
        # libyaml's loader and dumper where PyYAML has them: the pure-Python ones took half of a compile's time
        documents = list(yaml.load_all(yaml_path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    check_target(documents[0], documents[1] if len(documents) > 1 else None, target, source=f"{kind} pipeline of study {study.name!r}")
    if images is not None:
        _use_images(documents[0], images)
    # one executor per distinct container: a 50-round study stays far below etcd's object limit
    documents = [document for document in deduplicate(*documents) if document is not None]
    atomic_write_text(out, yaml.dump_all(documents, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=True))
    return Path(out)


def compile_pipelines(
    out_dir: str | os.PathLike[str],
    studies: Sequence[str | os.PathLike[str]] = (),
    kind: str = "hpo",
    *,
    data_root: str | None = None,
    images: PipelineImages | None = None,
    kfp_target: KfpTarget | str | None = None,
    ca_bundle: CaBundle | None = None,
) -> list[Path]:
    """Compile study pipeline ``kind`` of each study config in ``studies`` (``<kind>-<name>.yaml``), or every
    shipped pipeline (:data:`~proxyhpo.catalogue.SHIPPED_PIPELINES`, ``<name>.yaml``), into ``out_dir``.

    Args:
        data_root: for a cluster, where the studies' local data sets are pushed (``s3://bucket/datasets``):
            the pipelines' ``dataset`` and ``external`` fields default there (:meth:`StudyConfig.with_data_root`).
        images: the images the tasks run on (default: this process's).
        kfp_target: the KFP backend they are compiled for (default: the newest).
        ca_bundle: a private CA bundle every task trusts (default: none, the images' public CAs).

    Returns:
        The compiled files, in the order of ``studies`` or of the catalogue.
    """
    from proxyhpo.catalogue import SHIPPED_PIPELINES, shipped_study
    from proxyhpo.config import load_study

    out = Path(out_dir)
    STUDY_PIPELINES.check(kind)

    def placed(study: StudyConfig) -> StudyConfig:
        return study.with_data_root(data_root) if data_root else study

    if studies:
        jobs = [(placed(study), f"{kind}-{study.name}", kind) for study in map(load_study, studies)]
    else:
        jobs = [(placed(shipped_study(entry.example)), name, entry.kind) for name, entry in SHIPPED_PIPELINES.items()]
    return [compile_study(study, out / f"{name}.yaml", pipeline, images=images, kfp_target=kfp_target, ca_bundle=ca_bundle)
            for study, name, pipeline in jobs]
