"""One registry per family of techniques: name -> factory plus a small info record.

The recipe validator, `tricklab list <family>`, `get(name | {name: config} |
instance)` and the parametrized tests all read these registries, so adding a
technique is one file plus one `@registry.register(...)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tricklab.config import validate_config
from tricklab.errors import UserInputError, unknown_name_message

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True)
class Info:
    """What `tricklab list` shows about one registered technique.

    Args:
        name: The recipe name (snake_case).
        factory: Class or function that builds it from keyword arguments.
        description: One line saying what it does.
        reference: Paper or documentation it follows. Defaults to `""`.
        keras_name: The Keras spelling, where Keras has it. Defaults to `""`.
    """

    name: str
    factory: Callable[..., Any]
    description: str
    reference: str = ""
    keras_name: str = ""


class Entries(ABC, Generic[E]):
    """Named entries of one family, looked up and checked the way a recipe refers to them.

    The lookups and messages every registry shares; `Registry` keeps the live
    factories, `tricklab.recipe.snapshot` a cached copy of their signatures that
    checks a recipe without importing PyTorch.

    Args:
        family: Singular noun used in messages ("optimizer", "layer").
        runtime_args: Factory parameters passed at build time rather than
            configured (an optimizer's `params`). Defaults to `()`.
    """

    def __init__(self, family: str, runtime_args: tuple[str, ...] = ()) -> None:
        self.family = family
        self.runtime_args = runtime_args
        self._entries: dict[str, E] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def info(self, name: str, path: str = "") -> E:
        """Return the entry registered as `name`.

        Raises:
            UserInputError: If `name` is not registered; the message suggests the closest name.
        """
        if not isinstance(name, str) or name not in self._entries:
            raise UserInputError(
                unknown_name_message(path or self.family, self.family, name, self._entries)
            )
        return self._entries[name]

    def split(self, identifier: str | dict[str, Any], path: str = "") -> tuple[str, dict]:
        """Split `name` or `{name: config}` into the name and its (unvalidated) config."""
        if isinstance(identifier, str):
            return identifier, {}
        if isinstance(identifier, dict) and len(identifier) == 1:
            (name, config), = identifier.items()
            return name, {} if config is None else config
        raise UserInputError(
            f"{path or self.family}: expected {_article(self.family)} {self.family} name or a "
            f"one-key mapping {{name: {{...}}}}, got {identifier!r}"
        )

    def resolve(self, identifier: str | dict[str, Any], path: str = "") -> tuple[str, dict]:
        """Validate `name` or `{name: config}` and return the name with its full config."""
        name, config = self.split(identifier, path)
        return name, self.validate(name, config, f"{path}.{name}" if path else name, path)

    def validate(
        self, name: str, config: dict[str, Any] | None, path: str, name_path: str = ""
    ) -> dict[str, Any]:
        """Check `config` against `name`'s parameters and return it with all defaults.

        Args:
            name: Registered name.
            config: Keyword arguments from the user.
            path: Dotted location of `config`, for error messages.
            name_path: Dotted location of `name` itself. Defaults to `path`.
        """
        return self._validate(self.info(name, name_path or path), config, path)

    @abstractmethod
    def _validate(self, entry: E, config: dict[str, Any] | None, path: str) -> dict[str, Any]:
        """`config` checked against `entry`'s parameters, with every default filled in."""


class Registry(Entries[Info], Generic[T]):
    """Name -> factory map of one family (initializers, layers, optimizers, ...).

    Args:
        family: Singular noun used in messages ("optimizer", "layer").
        base: Type an already-built instance must have to pass `get` unchanged.
            Defaults to `None` (instances are not accepted).
        runtime_args: Factory parameters passed at build time rather than
            configured (an optimizer's `params`). Defaults to `()`.
    """

    def __init__(
        self,
        family: str,
        base: type | tuple[type, ...] | None = None,
        runtime_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(family, runtime_args)
        self.base = base

    def register(
        self, name: str, *, description: str, reference: str = "", keras_name: str = ""
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory under `name`."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.family} '{name}' is registered twice")
            self._entries[name] = Info(name, factory, description, reference, keras_name)
            return factory

        return decorate

    def _validate(self, entry: Info, config: dict[str, Any] | None, path: str) -> dict[str, Any]:
        return validate_config(entry.factory, config, path, self.runtime_args)

    def create(
        self, name: str, config: dict[str, Any] | None = None, path: str = "", **runtime: Any
    ) -> T:
        """Build `name` from its configuration (validated) and its run-time arguments."""
        name, full = self.resolve({name: config or {}}, path)
        return self._entries[name].factory(**runtime, **full)

    def get(self, identifier: str | dict[str, Any] | T, path: str = "") -> T:
        """Return an object from a name, a `{name: config}` mapping, or an instance as is."""
        if self.base is not None and isinstance(identifier, self.base):
            return identifier  # type: ignore[return-value]
        name, config = self.split(identifier, path)  # type: ignore[arg-type]
        return self.create(name, config, path)


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"
