"""The base of the schema layer: strict frozen models, versioned records, and one error translator.

Everything here imports pydantic and PyYAML only, so configs load, and KFP components start, without
torch or MONAI. A pydantic :class:`~pydantic.ValidationError` never reaches a user: :func:`config_error`
turns it into one :class:`~proxyhpo.errors.ConfigError` line naming the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from proxyhpo.errors import ConfigError

__all__ = ["StrictModel", "Record", "config_error", "brief", "load_yaml", "parse_config", "load_config"]

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound="Record")

#: Longest quoted input in an error line: a value is named, never dumped whole.
BRIEF_LIMIT = 120

#: Bounds of a YAML config: a config is a few hundred nodes; an alias bomb ("billion laughs") or a
#: document nested thousands deep is refused before it is expanded, in bounded time and memory.
YAML_MAX_ALIASES = 1_000
YAML_MAX_NODES = 100_000
YAML_MAX_DEPTH = 100


class _YAMLTooLarge(yaml.YAMLError):
    """A YAML document past one of the bounds above (``what`` says which)."""

    def __init__(self, what: str, mark: Any = None) -> None:
        super().__init__(what)
        self.what = what
        self.problem_mark = mark


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


class StrictModel(BaseModel):
    """Base of every model of the schema layer: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
        from proxyhpo.storage import read_bytes

        raw = read_bytes(path)
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(path, f"is not a {cls.__name__} JSON file ({brief(exc)})", f"regenerate it with {cls.WRITTEN_BY}") from exc
        return parse_config(cls, document, path, fix=f"regenerate it with {cls.WRITTEN_BY}")


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


def config_error(
    exc: ValidationError, source: str | os.PathLike[str], *, prefix: str = "", fix: str | None = None, document: Any = None
) -> ConfigError:
    """The one translator of a pydantic :class:`ValidationError` into a :class:`ConfigError` line.

    Args:
        exc: the validation error; its first error is reported, with the count of the others.
        source: the file (or option, or URL) the document came from.
        prefix: dotted key the validated document sits under (``search.space``), prepended to the key.
        fix: what to do; by default derived from the kind of error.
        document: the validated document, when at hand: keys are then named as the user wrote them
            (without the tags pydantic adds for tagged unions).

    Example:
        >>> try:
        ...     SelectionConfig.model_validate({"budget": 1})
        ... except ValidationError as exc:
        ...     print(config_error(exc, "study.yaml", prefix="selection"))
        study.yaml: key 'selection.budget': Input should be greater than or equal to 2 (got 1); fix: correct the value
    """
    errors = exc.errors()
    first = errors[0]
    location = _user_key(document, tuple(first["loc"])) if document is not None else tuple(first["loc"])
    key = ".".join(str(part) for part in ((prefix,) if prefix else ()) + location)
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        problem, default_fix = f"unknown key '{key}'", "remove or correct the key; see examples/ for every valid key"
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
        raise ConfigError(file, f"{exc.what}{where}", "write the config without nested aliases or deep nesting (a config is a few hundred keys)") from None
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
        raise config_error(exc, source, prefix=prefix, fix=fix, document=document) from None


def load_config(model: type[M], path: str | os.PathLike[str]) -> M:
    """Load the YAML file at ``path`` as ``model``.

    Example:
        >>> load_config(SelectionConfig, "selection.yaml")  # doctest: +SKIP
        SelectionConfig(method='mi+labelcrop', budget=8, seed=0)
    """
    return parse_config(model, load_yaml(path), path)

