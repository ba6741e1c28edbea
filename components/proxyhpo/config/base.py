"""The base of the schema layer: strict frozen models, versioned records, and one error translator.

Everything here imports pydantic and PyYAML only, so configs load, and KFP components start, without
torch or MONAI. A pydantic :class:`~pydantic.ValidationError` never reaches a user: :func:`config_error`
turns it into one :class:`~proxyhpo.errors.ConfigError` line naming the file and the key.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from proxyhpo.errors import ConfigError

__all__ = [
    "MAX_PATCH_VOXELS",
    "MAX_EPOCHS",
    "MAX_SIMILARITY_PATCH",
    "MAX_CASES",
    "MAX_BATCH",
    "MAX_GPUS",
    "MAX_HIDDEN",
    "MAX_SEED",
    "MIN_SPACING_MM",
    "MAX_SPACING_MM",
    "check_patch_voxels",
    "StrictModel",
    "Record",
    "config_error",
    "brief",
    "check_regular_file",
    "load_yaml",
    "parse_config",
    "load_config",
]

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound="Record")

#: Longest quoted input in an error line: a value is named, never dumped whole.
BRIEF_LIMIT = 120

#: Bounds of a YAML config: a config is a few hundred nodes; an alias bomb ("billion laughs") or a
#: document nested thousands deep is refused before it is expanded, in bounded time and memory.
YAML_MAX_ALIASES = 1_000
YAML_MAX_NODES = 100_000
YAML_MAX_DEPTH = 100
# Upper bounds of the numbers a user writes, from what one machine (a node of 8 GPUs of 80 GB) can hold
# or finish: a value past one is a typo or an attack (a patch of 4,096^3 voxels, 10^9 samples), refused
# at load, not found out hours later as an OOM kill or a run without end.
#: Voxels of one training patch or inference window: 512^3 float32 is 512 MiB per channel and feature map.
MAX_PATCH_VOXELS = 512**3
#: Side of the similarity engines' cubic patch: each volume of a data set is held at patch^3 float32
#: (256^3: 64 MiB a volume), and the NCC of two volumes takes several such arrays at once.
MAX_SIMILARITY_PATCH = 256
#: Epochs of one training (and every count of epochs: val_every, checkpoint_every, rungs).
MAX_EPOCHS = 100_000
#: Cases of a data set (synthetic cases, a proxy budget).
MAX_CASES = 100_000
#: Patches drawn per volume, volumes per batch, windows per inference call, models per pack.
MAX_BATCH = 1_024
#: GPUs (packs trained at once) of one study.
MAX_GPUS = 1_024
#: Units of a controller's hidden layer; channels of a network's first level.
MAX_HIDDEN = 4_096
#: A seed numpy accepts (an unsigned 32-bit integer).
MAX_SEED = 2**32 - 1
#: Finest and coarsest resampling spacing, in mm: 1e-6 mm would resample a CT to billions of voxels.
MIN_SPACING_MM, MAX_SPACING_MM = 0.01, 100.0

#: Largest config file read: a study config is a few kilobytes; a gigabyte string is refused unread.
CONFIG_MAX_BYTES = 1 << 20
#: Largest record read (trial results, plans, manifests): a few megabytes at most.
RECORD_MAX_BYTES = 64 << 20
#: Deepest JSON record read: json's recursion ends in RecursionError long before 100,000 levels.
JSON_MAX_DEPTH = 200


class _YAMLTooLarge(yaml.YAMLError):
    """A YAML document past one of the bounds above (``what`` says which)."""

    def __init__(self, what: str, mark: Any = None, fix: str = "write the config without nested aliases or deep nesting (a config is a few hundred keys)") -> None:
        super().__init__(what)
        self.what = what
        self.problem_mark = mark
        self.fix = fix


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias bombs and deep nesting while composing, before constructing.

    Every alias is counted with the size of the node it repeats, so a document whose expansion would
    exceed :data:`YAML_MAX_NODES` nodes fails after reading a few hundred bytes, not after 10 GB.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = event.anchor
            if anchor in self.anchors:
                self._aliases += 1
                self._nodes += self._sizes.get(id(self.anchors[anchor]), 1)
                if self._aliases > YAML_MAX_ALIASES or self._nodes > YAML_MAX_NODES:
                    raise _YAMLTooLarge(f"expands past {YAML_MAX_NODES} nodes through aliases (an alias bomb)", event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise _YAMLTooLarge(f"is nested deeper than {YAML_MAX_DEPTH} levels", self.peek_event().start_mark)
        before = self._nodes
        self._nodes += 1
        if self._nodes > YAML_MAX_NODES:
            raise _YAMLTooLarge(f"holds more than {YAML_MAX_NODES} nodes", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        # PyYAML keeps the last of two equal keys; a config that says a value twice is refused instead.
        # Merge keys (<<) may be overridden on purpose, so only keys written in this mapping are compared.
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _YAMLTooLarge(
                    f"repeats key {key!r} (first at line {seen[key].line + 1}): only one of the values would be used", key_node.start_mark, "write each key once"
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_float(self, node: Any) -> float:  # type: ignore[override]
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):  # .inf, .nan: no setting of ours takes an infinite or undefined number
            raise _YAMLTooLarge(f"holds the non-finite number {node.value!r}", node.start_mark, "give a finite number")
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def _numeric_not_bool(annotation: Any) -> bool:
    """Whether a field of type ``annotation`` holds numbers (int or float, also in unions, tuples, lists) but no booleans."""
    seen: set[int] = set()
    kinds: set[type] = set()

    def walk(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if node in (int, float, bool):
            kinds.add(node)
        for arg in typing.get_args(node):
            walk(arg)

    walk(annotation)
    return bool(kinds & {int, float}) and bool not in kinds


class StrictModel(BaseModel):
    """Base of every model of the schema layer: unknown keys are errors and instances are immutable.

    A boolean given for a number is an error: pydantic would read ``epochs: true`` as 1 epoch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_number(cls, document: Any) -> Any:
        if isinstance(document, dict):
            for name, value in document.items():
                if isinstance(value, bool) or (isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value)):
                    field = cls.model_fields.get(name) if isinstance(name, str) else None
                    if field is not None and _numeric_not_bool(field.annotation):
                        raise ValueError(f"key '{name}' must be a number, not the boolean {value!r}")
        return document


class Record(StrictModel):
    """A versioned JSON record one stage writes and the next reads (nnU-Net's plans; KFP artifacts).

    ``schema_version`` is bumped whenever a reader of the old layout would misread the new one.
    ``WRITTEN_BY`` names the stage that writes the record, for the fix of a read error.

    Example:
        >>> data.write("data.json")  # doctest: +SKIP
        >>> StudyData.read("data.json") == data  # doctest: +SKIP
        True
    """

    WRITTEN_BY: ClassVar[str] = "the stage that wrote it"

    schema_version: Literal[1] = 1

    def write(self, path: str | os.PathLike[str]) -> Path | str:
        """Write the record as indented JSON to ``path`` (a local file, atomically, or an ``s3://`` object); return the path."""
        from proxyhpo import storage

        text = self.model_dump_json(indent=2) + "\n"
        if storage.is_s3_url(path):
            storage.write_bytes(path, text.encode("utf-8"))
            return path  # type: ignore[return-value]
        return storage.atomic_write_text(path, text)

    @classmethod
    def read(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read a record written by :meth:`write` (a local file or an ``s3://`` object).

        Raises:
            StorageError: when it cannot be read.
            ConfigError: when it is not JSON or does not validate as this record, naming the key.
        """
        from proxyhpo.storage import is_s3_url, read_bytes

        fix = f"regenerate it with {cls.WRITTEN_BY}"
        if not is_s3_url(path) and os.path.exists(path):  # a missing one: read_bytes' StorageError
            check_regular_file(path, RECORD_MAX_BYTES, fix)
        raw = read_bytes(path)
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except RecursionError:
            raise ConfigError(path, f"is nested deeper than Python can read (a {cls.__name__} is a few levels deep)", fix) from None
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, a 5,000-digit integer, NaN
            raise ConfigError(path, f"is not a {cls.__name__} JSON file ({brief(exc)})", fix) from None
        if _depth(document) > JSON_MAX_DEPTH:
            raise ConfigError(path, f"is nested deeper than {JSON_MAX_DEPTH} levels (a {cls.__name__} is a few levels deep)", fix)
        return parse_config(cls, document, path, fix=fix)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not a number JSON allows")


def _depth(document: Any) -> int:
    """Nesting depth of a JSON document (1 for a scalar), counted without recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def check_regular_file(path: str | os.PathLike[str], max_bytes: int, fix: str) -> None:
    """Refuse to read ``path`` unless it is a regular file of at most ``max_bytes``: ``/dev/zero`` or a FIFO never ends.

    Raises:
        ConfigError: naming the path and what it is.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(path, "file does not exist", "check the path") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot be read ({exc.strerror})", "check the path and its permissions") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise ConfigError(path, f"is {what}", fix)
    if info.st_size > max_bytes:
        raise ConfigError(path, f"is {info.st_size} bytes, more than the {max_bytes} a config or record can be", fix)


def check_patch_voxels(size: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Return ``size`` if its voxel count is at most :data:`MAX_PATCH_VOXELS`.

    Raises:
        ValueError: naming ``what``, the size and the limit.
    """
    voxels = math.prod(size)
    if voxels > MAX_PATCH_VOXELS:
        raise ValueError(f"{what} {tuple(size)} is {voxels:,} voxels, more than the {MAX_PATCH_VOXELS:,} (512^3) one patch may hold")
    return size


def brief(value: Any, limit: int = BRIEF_LIMIT) -> str:
    """``value`` as one short line (``repr`` for non-strings): error lines quote inputs, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, BaseException):
        text = str(value) or type(value).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _user_key(document: Any, location: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic error location that names keys of the user's document.

    A discriminated union adds its tag to the location (``lr.log_uniform.low``); the document has no
    such key, so parts that do not lead into the document are dropped (``lr.low``).
    """
    kept: list[Any] = []
    node = document
    for part in location:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and node.get("type", node.get("kind")) == part:
            continue  # the union's tag
        else:
            node = None  # past the document (a missing or unknown key): keep the rest as given
        kept.append(part)
    return tuple(kept)


def _union_branch(part: Any) -> bool:
    """Whether a part of a pydantic error location is a union's branch (``str``, ``Recipe``), not a key (keys are snake_case)."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "list", "dict", "tuple"} or part[:1].isupper() or "[" in part)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's annotation holds (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``, a union of models)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for argument in typing.get_args(annotation) for found in _models_in(argument)]


def _valid_keys(model: type[BaseModel], location: tuple[Any, ...]) -> set[str]:
    """The keys valid where an unknown key sits: the fields of the model(s) at ``location`` (the unknown key's parents)."""
    models = [model]
    for part in location:
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if fields:  # a key; anything else (a list index, a dict's own key, a union's tag) stays in the same models
            models = [found for field in fields for found in _models_in(field.annotation)]
    return {field.alias or name for m in models for name, field in m.model_fields.items()}


def _nearest_key(model: type[BaseModel] | None, location: tuple[Any, ...]) -> str | None:
    """The valid key nearest to the unknown last key of ``location`` (:func:`difflib.get_close_matches`), else None."""
    if model is None or not location:
        return None
    unknown = str(location[-1])
    nearest = difflib.get_close_matches(unknown, sorted(_valid_keys(model, tuple(location[:-1])) - {unknown}), n=1, cutoff=0.6)
    return nearest[0] if nearest else None


def config_error(
    exc: ValidationError,
    source: str | os.PathLike[str],
    *,
    prefix: str = "",
    fix: str | None = None,
    document: Any = None,
    model: type[BaseModel] | None = None,
) -> ConfigError:
    """The one translator of a pydantic :class:`ValidationError` into a :class:`ConfigError` line.

    Args:
        exc: the validation error; its first error is reported, with the count of the others.
        source: the file (or option, or URL) the document came from.
        prefix: dotted key the validated document sits under (``search.space``), prepended to the key.
        fix: what to do; by default derived from the kind of error.
        document: the validated document, when at hand: keys are then named as the user wrote them
            (without the tags pydantic adds for tagged unions).
        model: the validated model, when at hand: an unknown key's fix names the nearest valid key.

    Example:
        >>> try:
        ...     SelectionConfig.model_validate({"budget": 1})
        ... except ValidationError as exc:
        ...     print(config_error(exc, "study.yaml", prefix="selection"))
        study.yaml: key 'selection.budget': Input should be greater than or equal to 2 (got 1); fix: correct the value
    """
    errors = exc.errors()
    first = errors[0]
    if str(first["type"]).endswith("_type") and len(first["loc"]) > 1 and _union_branch(first["loc"][-1]):
        # a union (``str | Recipe``) reports its first branch's type mismatch first: the branch the user
        # meant, the one whose error goes deepest into their document, says what is wrong
        union = tuple(first["loc"][:-1])
        branches = [
            e for e in errors
            if len(e["loc"]) > len(union) and tuple(e["loc"][: len(union)]) == union and _union_branch(e["loc"][len(union)])
            and not str(e["type"]).endswith("_type")
        ]
        first = max(branches, key=lambda e: len(e["loc"]), default=first)
    location = _user_key(document, tuple(first["loc"])) if document is not None else tuple(first["loc"])
    key = ".".join(str(part) for part in ((prefix,) if prefix else ()) + location)
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        problem, default_fix = f"unknown key '{key}'", "remove or correct the key; see examples/ for every valid key"
        nearest = _nearest_key(model, tuple(first["loc"]))
        if nearest:  # a typo: name the key it most likely meant, where it sits
            default_fix = f"did you mean '{'.'.join(str(part) for part in ((prefix,) if prefix else ()) + location[:-1] + (nearest,))}'?"
    elif first["type"] == "missing":
        problem, default_fix = f"required key '{key}' is missing", f"add '{key}'"
    elif not first["loc"] or isinstance(first.get("input"), dict):  # a check across keys: its message names them
        problem, default_fix = f"{key + ': ' if key else ''}{message}", "correct the values"
    elif first["type"] == "value_error":  # our own validators' messages already quote the value
        problem, default_fix = f"key '{key}': {message}", "correct the value"
    else:
        problem, default_fix = f"key '{key}': {message} (got {brief(first.get('input'))})", "correct the value"
    return ConfigError(source, problem + more, fix or default_fix)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping from ``path``.

    Raises:
        ConfigError: when the file is missing, is not UTF-8, is not valid YAML or is not a mapping.
    """
    file = Path(path)
    check_regular_file(file, CONFIG_MAX_BYTES, "give the path of a YAML config file (a few kilobytes); see examples/")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(file, "file does not exist", "check the path of the config file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(file, f"is not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(file, f"cannot be read ({exc.strerror})", "check the path of the config file") from exc
    try:
        document = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader with bounds
    except _YAMLTooLarge as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(file, f"{exc.what}{where}", exc.fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(file, f"is not valid YAML{where}", "fix the YAML syntax") from exc
    if document is None:
        raise ConfigError(file, "is empty", "write the config as 'key: value' pairs; see examples/")
    if not isinstance(document, dict):
        raise ConfigError(file, f"holds a {type(document).__name__}, not a mapping", "write the config as 'key: value' pairs")
    return document


#: Validation context of a config read back from a run that already ran (:func:`parse_config`'s ``recorded``).
RECORDED = "recorded"


def parse_config(
    model: type[M], document: Any, source: str | os.PathLike[str], *, prefix: str = "", fix: str | None = None, recorded: bool = False
) -> M:
    """Validate ``document`` as ``model``; errors name the key and ``source``.

    Args:
        recorded: the document is the config of a run that already ran (a report reads it back): rules that
            guard what a run may start (the trust grid's power) are not applied, so that a rule added since
            does not make an earlier study's report unreadable.

    Raises:
        ConfigError: for the first invalid, missing or unknown key.
    """
    try:
        return model.model_validate(document, context={RECORDED: True} if recorded else None)
    except ValidationError as exc:
        raise config_error(exc, source, prefix=prefix, fix=fix, document=document, model=model) from None


def load_config(model: type[M], path: str | os.PathLike[str]) -> M:
    """Load the YAML file at ``path`` as ``model``.

    Example:
        >>> load_config(SelectionConfig, "selection.yaml")  # doctest: +SKIP
        SelectionConfig(method='mi+labelcrop', budget=8, seed=0)
    """
    return parse_config(model, load_yaml(path), path)

