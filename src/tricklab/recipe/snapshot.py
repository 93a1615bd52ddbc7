"""A cached copy of every registry that checks a recipe without importing PyTorch.

Checking a recipe needs each technique's parameters, which live in the
signatures of classes built on PyTorch; importing them costs seconds. The
snapshot keeps what checking needs, as JSON in `$TRICKLAB_CACHE/registries/`:
every entry's name, description and reference, and pydantic's own validation
schema of its signature (the schema pydantic-core runs, not a re-description),
so a rebuilt validator gives the live registry's messages word for word.

It is keyed by tricklab's source files (path, size, modification time), the
Python and pydantic-core versions, so an edited or upgraded tricklab builds a
new one. Techniques registered at run time from Python are not in it: the
command line, which alone uses it, registers none.

A custom check is kept by name when it is one of `tricklab.checks` (which
holds no PyTorch). What else a schema holds that JSON cannot (another
function, a Python class) is weakened, never tightened: a validator that runs
after the type check is dropped (its type check kept), one that runs before it
or instead of it makes the field accept anything, and an instance check keeps
its class name for the message. So a snapshot may let through what the live registry refuses
(the full check that follows finds it), never the reverse.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import pydantic_core

from tricklab import __version__, checks
from tricklab.atomic import write_text
from tricklab.config import check_config
from tricklab.errors import UserInputError, unknown_name_message
from tricklab.paths import cache_dir
from tricklab.registry import Entries

FOLDER = "registries"
"""The snapshots' folder under the cache."""

_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass
class SnapshotEntry:
    """One registered technique as the snapshot keeps it.

    Args:
        name: The recipe name.
        description: One line saying what it does.
        reference: Paper or documentation it follows.
        keras_name: The Keras spelling, where Keras has it.
        fields: pydantic-core's schema of the signature's fields (`model-fields`), made
            portable; `None` when the signature could not be described (nothing checked).
        config: pydantic-core's configuration of that schema.
        accepted: The parameter names, listed when an unknown key is met.
        refs: Parameter -> the family its value names (`kernel_initializer` -> `initializers`).
        resolves_itself: Whether the factory has its own `resolve_config` step, which the
            snapshot cannot run (its nested entries are left to the full check).
        weakened: The parameters whose check the snapshot had to weaken.
    """

    name: str
    description: str
    reference: str
    keras_name: str
    fields: dict[str, Any] | None
    config: dict[str, Any]
    accepted: list[str]
    refs: dict[str, str]
    resolves_itself: bool
    weakened: list[str]
    _validator: pydantic_core.SchemaValidator | None = field(default=None, repr=False)

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` checked by the rebuilt validator and completed with the defaults.

        Raises:
            pydantic.ValidationError: The live registry's error, word for word.
            Undecided: When the live registry's error cannot be known here: a weakened
                parameter is set, and it may have failed too (or first).
        """
        if self.fields is None:
            raise Undecided(self.name)
        if self._validator is None:
            self._validator = pydantic_core.SchemaValidator(_rebuilt(self.fields), self.config)
        try:
            values, _, _ = self._validator.validate_python(config)
        except pydantic_core.ValidationError:
            if any(name in config for name in self.weakened):
                raise Undecided(self.name) from None
            raise
        return values


class Undecided(Exception):
    """The snapshot cannot tell what the live check would say: leave it to that check."""


class SnapshotRegistry(Entries[SnapshotEntry]):
    """A registry read from the snapshot: the live one's lookups, names and messages."""

    def __init__(self, family: str, runtime_args: tuple[str, ...],
                 entries: dict[str, SnapshotEntry]) -> None:
        super().__init__(family, runtime_args)
        self._entries = entries

    def _validate(self, entry: SnapshotEntry, config: dict[str, Any] | None,
                  path: str) -> dict[str, Any]:
        return check_config(config, path, entry.validate, entry.accepted)


@dataclass
class Snapshot:
    """Every registry by family (`"layers"`, `"optimizers"`, ...) and the recipe's JSON Schema."""

    registries: dict[str, SnapshotRegistry]
    json_schema: dict[str, Any]

    def __getitem__(self, family: str) -> SnapshotRegistry:
        return self.registries[family]

    def family(self, name: str) -> SnapshotRegistry:
        """The registry of the family `name` (plural, e.g. `"optimizers"`).

        Raises:
            UserInputError: For an unknown family, naming the known ones, as
                `tricklab.registries.registry_for` does.
        """
        if name not in self.registries:
            raise UserInputError(unknown_name_message("family", "family", name, self.registries))
        return self.registries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.registries)


def snapshot_key() -> str:
    """The hash naming the snapshot of the tricklab installed now."""
    digest = hashlib.sha256()
    digest.update(f"{__version__} {sys.version} {pydantic_core.__version__}".encode())
    for folder, folders, files in os.walk(_PACKAGE):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(folder, name))
                relative = os.path.relpath(os.path.join(folder, name), _PACKAGE)
                digest.update(f"{relative} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def cached_snapshot() -> Snapshot | None:
    """The snapshot of the installed tricklab, if the cache holds it (nothing heavy imported)."""
    try:
        document = json.loads((cache_dir() / FOLDER / f"{snapshot_key()}.json").read_bytes())
        return _read(document)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from an older layout: built again


def current_snapshot() -> Snapshot:
    """The cached snapshot, or one built now from the live registries (importing PyTorch).

    A new snapshot is written to the cache, replacing the older ones there; a cache
    that cannot be written only costs the next command the time of building it.
    """
    snapshot = cached_snapshot()
    if snapshot is not None:
        return snapshot
    document = build_document()
    folder = cache_dir() / FOLDER
    name = f"{snapshot_key()}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / name, json.dumps(document))
        for old in folder.glob("*.json"):
            if old.name != name:
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return _read(document)


def build_document() -> dict[str, Any]:
    """The snapshot of the live registries as JSON-ready data (imports every technique)."""
    from tricklab.config import signature_model
    from tricklab.recipe.jsonschema import recipe_json_schema
    from tricklab.registries import REGISTRIES

    families = {id(registry): family for family, registry in REGISTRIES.items()}
    registries = {}
    for family, registry in REGISTRIES.items():
        entries = {}
        for info in registry:
            model = signature_model(info.factory, registry.runtime_args)
            entries[info.name] = {
                "description": info.description, "reference": info.reference,
                "keras_name": info.keras_name, **_fields(model.__pydantic_core_schema__),
                "accepted": sorted(model.model_fields),
                "refs": {name: families[id(ref.registry)]
                         for name, ref in _registry_refs(info.factory).items()},
                "resolves_itself": hasattr(info.factory, "resolve_config"),
            }
        registries[family] = {"family": registry.family,
                              "runtime_args": list(registry.runtime_args), "entries": entries}
    return {"registries": registries, "json_schema": recipe_json_schema()}


def _read(document: dict[str, Any]) -> Snapshot:
    registries = {
        family: SnapshotRegistry(
            data["family"], tuple(data["runtime_args"]),
            {name: SnapshotEntry(name=name, **entry) for name, entry in data["entries"].items()})
        for family, data in document["registries"].items()
    }
    return Snapshot(registries, document["json_schema"])


def _registry_refs(factory: Any) -> dict[str, Any]:
    """The parameters of `factory` whose values name another registry's entries."""
    from tricklab.nn.base import registry_ref

    target = factory.__init__ if isinstance(factory, type) else factory
    refs = {}
    for name, hint in get_type_hints(target, include_extras=True).items():
        ref = registry_ref(hint)
        if ref is not None:
            refs[name] = ref
    return refs


class _NotPortable(Exception):
    """A schema node JSON cannot hold."""


def _fields(schema: dict[str, Any]) -> dict[str, Any]:
    """`{"fields", "config", "weakened"}` of a signature model's core schema, made portable."""
    if schema.get("type") != "model" or schema["schema"].get("type") != "model-fields":
        return {"fields": None, "config": {}, "weakened": []}
    try:
        config = _portable(schema.get("config", {}))
    except _NotPortable:
        config = {}
    fields = schema["schema"]["fields"]
    portable = {name: _portable_schema(field) for name, field in fields.items()}
    weakened = [name for name in fields if _weakens(fields[name])]
    return {"fields": {**_portable_schema({**schema["schema"], "fields": {}}), "fields": portable},
            "config": config, "weakened": weakened}


def _weakens(schema: Any) -> bool:
    """Whether making `schema` portable loses a check (a function, or a node JSON cannot hold)."""
    if isinstance(schema, dict):
        if str(schema.get("type", "")).startswith("function-"):
            return _check_name(schema["function"]["function"]) is None or _weakens(
                schema.get("schema"))
        return any(_weakens(value) for key, value in schema.items()
                   if key not in ("metadata", "serialization", "default", "default_factory"))
    if isinstance(schema, list | tuple):
        return any(_weakens(item) for item in schema)
    return not (schema is None or isinstance(schema, bool | int | float | str | type))


def _portable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema node as JSON, weakened where it must be (see the module docstring)."""
    kind = schema.get("type")
    if kind in ("function-before", "function-after", "function-wrap", "function-plain"):
        check = _check_name(schema["function"]["function"])
        if check is not None:
            function = {**schema["function"], "function": check}
            rest = {key: _portable(value) for key, value in schema.items()
                    if key not in ("function", "metadata", "serialization")}
            return {**rest, "function": function}
        if kind != "function-after":
            return {"type": "any"}
        return _portable_schema(schema["schema"])
    if kind == "is-instance":
        return {"type": "is-instance", "cls": getattr(schema["cls"], "__name__", "object")}
    portable: dict[str, Any] = {}
    try:
        for key, value in schema.items():
            if key in ("metadata", "serialization", "default_factory"):
                continue
            if key == "default":
                portable[key] = _portable_default(value)
            else:
                portable[key] = _portable(value)
    except _NotPortable:
        return {"type": "any"}
    if "default_factory" in schema:
        portable["default"] = None  # defaults are not checked, only filled in
    return portable


def _portable_default(value: Any) -> Any:
    try:
        return _portable(value)
    except _NotPortable:
        return None


def _portable(value: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            return _portable_schema(value)
        return {str(key): _portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_portable(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise _NotPortable(type(value).__name__)


def _check_name(function: Any) -> dict[str, Any] | None:
    """`{"check": name}` (with `"args"` for a check object) of a `tricklab.checks` check."""
    if getattr(function, "__module__", None) == checks.__name__ and getattr(
            checks, getattr(function, "__qualname__", ""), None) is function:
        return {"check": function.__qualname__}
    if is_dataclass(function) and type(function).__module__ == checks.__name__:
        return {"check": type(function).__qualname__, "args": asdict(function)}
    return None


def _rebuilt(value: Any) -> Any:
    """The portable schema with its checks and the classes of its instance checks restored."""
    if isinstance(value, dict):
        if value.get("type") == "is-instance":
            return {"type": "is-instance", "cls": _stand_in(value["cls"])}
        if "check" in value:
            found = getattr(checks, value["check"])
            return found(**value["args"]) if "args" in value else found
        return {key: _rebuilt(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rebuilt(item) for item in value]
    return value


_STAND_INS: dict[str, type] = {}


def _stand_in(name: str) -> type:
    """A class named as the real one, which nothing read from a recipe is an instance of."""
    return _STAND_INS.setdefault(name, type(name, (), {}))


__all__ = ["Snapshot", "SnapshotEntry", "SnapshotRegistry", "Undecided", "build_document",
           "cached_snapshot", "current_snapshot", "snapshot_key"]
