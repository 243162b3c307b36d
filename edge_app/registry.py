"""Typed configuration sections: a name picks a class, the class's constructor is the schema.

:class:`Registry` backs both ``make_combiner`` (``combination.method``) and ``make_detector``
(``drift.detector``): the keys a section may hold are the chosen class's constructor
parameters, their defaults are the signature's (the measured ones), values are converted to
the annotated type, and an unknown key is an error listing the valid ones. Built objects keep
their constructor arguments as attributes (river's convention), so :meth:`Configurable.params`
gives back the config that rebuilds them.

>>> reg = Registry("shape", key="kind", default="box")
>>> @reg.register("box")
... class Box(Configurable):
...     def __init__(self, width: float = 2.0, solid: bool = True) -> None:
...         self.width = width
...         self.solid = solid
>>> reg.build({"width": "3"}).params()
{'width': 3.0, 'solid': True}
>>> reg.build({"kind": "box", "widht": 3})
Traceback (most recent call last):
...
ValueError: unknown shape key(s) for box: widht (valid: kind, solid, width)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Configurable:
    """Constructor arguments stay attributes of the same name; :meth:`params` lists them."""

    def params(self) -> dict[str, Any]:
        """The constructor arguments of this object (``type(self)(**self.params())`` is a fresh copy)."""
        return {name: getattr(self, name) for name in parameters(type(self))}


def _constructors(cls: type) -> list[Callable]:
    """``cls``'s constructor, and while it passes ``**kwargs`` on, the next one up the MRO's."""
    found = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        found.append(init)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return found


def parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``cls``'s constructor (``self`` and ``*args`` left out); a ``**kwargs`` stands
    for the keyword parameters of the base class's constructor it is passed on to.

    >>> class Base:
    ...     def __init__(self, size: int = 1) -> None: ...
    >>> class Layered(Base):
    ...     def __init__(self, layer: str = "none", **base) -> None: ...
    >>> list(parameters(Layered))
    ['layer', 'size']
    """
    return {
        name: p
        for init in _constructors(cls)
        for name, p in inspect.signature(init).parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _hints(cls: type) -> dict[str, Any]:
    """The annotations of :func:`parameters` (the subclass's where both annotate a name)."""
    hints: dict[str, Any] = {}
    for init in reversed(_constructors(cls)):
        hints |= typing.get_type_hints(init)
    return hints


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the annotated type (float, int, bool, str; ``X | None`` allows None)."""
    args = typing.get_args(annotation)
    if value is None and type(None) in args:
        return None
    if args:  # X | None: convert to X
        annotation = next(a for a in args if a is not type(None))
    try:
        if annotation is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in _TRUE + _FALSE:
                    raise ValueError(value)
                return low in _TRUE
            if not isinstance(value, bool | int):
                raise ValueError(value)
            return bool(value)
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if annotation in (float, str):
            if annotation is float and isinstance(value, bool):
                raise ValueError(value)
            return annotation(value)
    except (TypeError, ValueError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ValueError(f"{where} must be {name}, got {value!r}") from None
    return value


class Registry(Generic[T]):
    """Named classes of one kind, built from a config mapping (``key`` names the class)."""

    def __init__(self, kind: str, *, key: str, default: str) -> None:
        self.kind = kind
        self.key = key
        self.default = default
        self.classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@registry.register("adwin")``."""

        def add(cls: type[T]) -> type[T]:
            self.classes[name] = cls
            return cls

        return add

    def add(self, classes: Mapping[str, type[T]]) -> None:
        """Register several classes at once (name -> class, in the order listed)."""
        self.classes.update(classes)

    def __contains__(self, name: object) -> bool:
        return name in self.classes

    def __iter__(self):
        return iter(self.classes)

    def valid_keys(self, name: str) -> list[str]:
        """The keys a section choosing ``name`` may hold."""
        return sorted([self.key, *parameters(self.classes[name])])

    def build(self, config: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> T:
        """The object ``config`` describes; ValueError naming the bad key (and the valid ones)."""
        if not isinstance(config, Mapping):
            raise ValueError(f"{self.kind} config must be an object, got {type(config).__name__}")
        name = config.get(self.key, self.default)
        if name not in self.classes:
            raise ValueError(f"unknown {self.kind} {name!r} ({', '.join(self.classes)})")
        cls = self.classes[name]
        params = parameters(cls)
        skip = {self.key, *ignore}
        unknown = sorted(k for k in config if k not in skip and k not in params)
        if unknown:
            valid = ", ".join(self.valid_keys(name))
            raise ValueError(f"unknown {self.kind} key(s) for {name}: {', '.join(unknown)} (valid: {valid})")
        hints = _hints(cls)
        kwargs = {k: _convert(v, hints.get(k, Any), k) for k, v in config.items() if k in params}
        return cls(**kwargs)
