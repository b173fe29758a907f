"""Named specs declared once and read everywhere: the study's variants, degradation kinds and
Table 1 metrics are each a :class:`Registry` of frozen dataclasses.

A module that needs to know something about a variant, a kind or a metric reads its spec
(``VARIANT_SPECS["im"].needs``), never a string switch on its name; a new one is one
``register`` call. :meth:`Registry.registered` adds a spec for the length of a ``with`` block
(a test's toy variant, an experiment in a notebook) and removes it after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["Registry", "Names", "Field"]

Spec = TypeVar("Spec")


class Names(Sequence[str]):
    """The names of a registry, in registration order: a live, read-only tuple-like view, so
    ``KINDS.index("blur")`` and ``"toy" in VARIANTS`` see specs registered later."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(self._registry)[index]

    def __len__(self) -> int:
        return len(self._registry)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, Names)) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


class Field(Mapping[str, object]):
    """One attribute of every spec of a registry by name (``KIND_SPECS.field("color")``): a
    live, read-only mapping, for code that only needs, say, each kind's colour."""

    def __init__(self, registry: Registry, attribute: str) -> None:
        self._registry, self._attribute = registry, attribute

    def __getitem__(self, name: str) -> object:
        if name not in self._registry:
            raise KeyError(name)
        return getattr(self._registry[name], self._attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)


class Registry(Mapping[str, Spec], Generic[Spec]):
    """Specs by their ``name``, in registration order; ``what`` names them in messages."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._specs: dict[str, Spec] = {}
        self.names = Names(self)

    def register(self, spec: Spec) -> Spec:
        """Add ``spec`` under ``spec.name`` (a new, non-empty name); returns it."""
        name = getattr(spec, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {self.what} needs a non-empty name, got {name!r}")
        if name in self._specs:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._specs[name] = spec
        return spec

    def field(self, attribute: str) -> Field:
        """The live mapping name -> ``spec.<attribute>`` (:class:`Field`)."""
        return Field(self, attribute)

    @contextlib.contextmanager
    def registered(self, spec: Spec) -> Iterator[Spec]:
        """``spec`` registered inside the ``with`` block only."""
        self.register(spec)
        try:
            yield spec
        finally:
            del self._specs[spec.name]  # type: ignore[attr-defined]

    def __getitem__(self, name: str) -> Spec:
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.what} {name!r}; registered: "
                             f"{list(self._specs)}") from None

    def get(self, name: str, default: Spec | None = None) -> Spec | None:
        """The spec called ``name``, or ``default`` when none is."""
        return self._specs.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs
