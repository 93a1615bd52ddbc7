"""Signature-driven validation of keyword configurations.

Every registered factory (layer, initializer, optimizer, callback, dataset)
declares its hyperparameters once, as a typed Python signature with defaults.
This module turns that signature into a strict pydantic model, so a recipe's
`{units: 300}` is checked (unknown keys, wrong types) and completed with every
default, and errors name the dotted path of the offending field.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

import pydantic

from tricklab.errors import UserInputError, shown_value


@functools.cache
def signature_model(
    factory: Callable[..., Any], skip: tuple[str, ...] = ()
) -> type[pydantic.BaseModel]:
    """Build a strict pydantic model whose fields are `factory`'s keyword parameters.

    Args:
        factory: A class (its `__init__` is read) or a function.
        skip: Parameters supplied at run time rather than by configuration
            (an optimizer's `params`). Defaults to `()`.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = get_type_hints(target, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(target).parameters.items():
        variadic = param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        if name == "self" or name in skip or variadic:
            continue
        annotation = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    return pydantic.create_model(
        f"{getattr(factory, '__name__', 'factory')}Config",
        __config__=pydantic.ConfigDict(
            extra="forbid", arbitrary_types_allowed=True, strict=False
        ),
        **fields,
    )


def format_validation_error(
    error: pydantic.ValidationError, prefix: str = "", accepted: list[str] | None = None
) -> str:
    """Turn a pydantic error into one line: `path.to.field: what is wrong (got value)`.

    Args:
        error: The error pydantic raised.
        prefix: Dotted path of the validated object inside the recipe. Defaults to `""`.
        accepted: Keys to list when the error is an unknown key. Defaults to `None`.
    """
    problems = error.errors(include_url=False)
    first = problems[0]
    location = _dotted(prefix, first["loc"])
    if first["type"] == "extra_forbidden":
        message = f"unknown key {shown_value(str(first['loc'][-1]))}"
        location = _dotted(prefix, first["loc"][:-1]) or "<top level>"
        if accepted:
            message += f"; accepted keys: {', '.join(accepted)}"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif _names_a_field(first):
        # A section's own check ("epochs: differs from ...") reports at that field.
        field, _, message = first["msg"].removeprefix("Value error, ").partition(": ")
        location = f"{location}.{field}" if location else field
    else:
        got = shown_value(first.get("input"))
        message = f"{first['msg'][0].lower()}{first['msg'][1:]} (got {got})"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{location or '<top level>'}: {message}{more}"


def _dotted(prefix: str, location: tuple[Any, ...]) -> str:
    """`prefix` and pydantic's location joined by dots; a user's long or odd key is shortened."""
    parts = [str(part) for part in location]
    shown = [part if part.isprintable() and len(part) <= 40 else shown_value(part, 40)
             for part in parts]
    return ".".join(part for part in (prefix, *shown) if part != "")


def _names_a_field(problem: dict[str, Any]) -> bool:
    """Whether a whole-section check raised `ValueError("field: message")`."""
    field, colon, _ = problem["msg"].removeprefix("Value error, ").partition(": ")
    return (
        problem["type"] == "value_error" and isinstance(problem.get("input"), dict)
        and bool(colon) and field.isidentifier()
    )


def validate_config(
    factory: Callable[..., Any],
    config: dict[str, Any] | None,
    path: str,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check `config` against `factory`'s signature and return it with every default filled in.

    Args:
        factory: A class or function whose keyword parameters define the accepted keys.
        config: The user's keyword arguments; `None` means all defaults.
        path: Dotted location of `config` in the recipe, used in error messages.
        skip: Parameters supplied at run time, not accepted in `config`. Defaults to `()`.

    Raises:
        UserInputError: On an unknown key, a missing required key or a wrong type.
    """
    model = signature_model(factory, tuple(skip))

    def validate(checked: dict[str, Any]) -> dict[str, Any]:
        validated = model.model_validate(checked)
        return {name: getattr(validated, name) for name in model.model_fields}

    return check_config(config, path, validate, sorted(model.model_fields))


def check_config(
    config: dict[str, Any] | None,
    path: str,
    validate: Callable[[dict[str, Any]], dict[str, Any]],
    accepted: list[str],
) -> dict[str, Any]:
    """Run `validate` on a user's keyword arguments; its first problem becomes one line.

    Args:
        config: The user's keyword arguments; `None` means all defaults.
        path: Dotted location of `config` in the recipe, used in error messages.
        validate: Checks a mapping and returns it completed, raising pydantic's error.
        accepted: The keys listed when an unknown key is met.

    Raises:
        UserInputError: On an unknown key, a missing required key or a wrong type.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UserInputError(
            f"{path}: expected a mapping of keyword arguments, got {shown_value(config)}"
        )
    try:
        return validate(config)
    except pydantic.ValidationError as error:
        raise UserInputError(format_validation_error(error, path, accepted=accepted)) from None


def split_trainable(item: Any, path: str) -> tuple[Any, bool]:
    """Take the Keras-wide `trainable` option out of a layer entry, which no layer's own
    signature has: `{dense: {units: 8, trainable: false}}` -> `({dense: {units: 8}}, False)`.

    Raises:
        UserInputError: When `trainable` is not a boolean, naming its dotted path.
    """
    if not isinstance(item, dict) or len(item) != 1:
        return item, True
    ((name, config),) = item.items()
    if not isinstance(config, dict) or "trainable" not in config:
        return item, True
    config = dict(config)
    trainable = config.pop("trainable")
    if not isinstance(trainable, bool):
        raise UserInputError(f"{path}.{name}.trainable: expected true or false, got {trainable!r}")
    return {name: config}, trainable


class Configurable:
    """Mixin that records constructor arguments, Keras style.

    `get_config()` returns every constructor argument (defaults included) and
    `from_config(config)` rebuilds an equal object, so anything registered can
    be written into a resolved recipe and read back.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Configurable, *args: Any, **kw: Any) -> None:
            # Only the most derived class records: its arguments are the object's config.
            if "_config" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self")
                object.__setattr__(self, "_config", arguments)
            init(self, *args, **kw)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments that rebuild this object."""
        return dict(self.__dict__.get("_config", {}))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Configurable:
        """Rebuild an object from `get_config()`'s output."""
        return cls(**config)
