"""Parameters: the zipped rows of `global.parameters`, or of a custom generator (`--pgen`).

`ParameterGenerator` has Maestro's API (`add_parameter`, `parameters`, `labels`, `names`,
`get_combinations`), so pgen files written for Maestro work unchanged. Loading a pgen file runs
the user's code, exactly as Maestro does: that is the contract of `--pgen`. It is the one IO this
package does besides reading spec text, kept here so the contract lives in one place.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.spec.model import Parameter


class ParameterGenerator:
    """Maestro-compatible parameter generator: named value lists of equal length, zipped."""

    def __init__(self) -> None:
        self.parameters: dict[str, list[Any]] = {}
        self.labels: dict[str, str | list[str]] = {}
        self.names: dict[str, str] = {}

    def add_parameter(
        self,
        key: str,
        values: list[Any],
        label: str | list[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.parameters[key] = list(values)
        self.labels[key] = label if label is not None else f"{key}.%%"
        self.names[key] = name if name is not None else key

    def __bool__(self) -> bool:
        return bool(self.parameters)

    def __len__(self) -> int:
        return len(next(iter(self.parameters.values()), []))

    def get_combinations(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield {k: v[i] for k, v in self.parameters.items()}


@dataclass(frozen=True)
class ParameterSet:
    """Validated parameters: per name, its values, rendered labels and display name."""

    values: dict[str, list[Any]]
    labels: dict[str, list[str]]
    names: dict[str, str]

    @property
    def rows(self) -> int:
        return len(next(iter(self.values.values()), []))

    @classmethod
    def empty(cls) -> ParameterSet:
        return cls({}, {}, {})


def render_label(label: str | list[str], values: list[Any]) -> list[str]:
    if isinstance(label, list):
        return [str(x) for x in label]
    return [label.replace("%%", str(v)) for v in values]


def from_spec(params: Mapping[str, Parameter]) -> ParameterSet:
    return ParameterSet(
        values={k: list(p.values) for k, p in params.items()},
        labels={k: render_label(p.label, list(p.values)) for k, p in params.items()},
        names={k: k for k in params},
    )


def from_generator(gen: ParameterGenerator) -> ParameterSet:
    """Any object with Maestro's generator attributes (ours or maestrowf's own class)."""
    names = getattr(gen, "names", None) or {}
    return ParameterSet(
        values={k: list(v) for k, v in gen.parameters.items()},
        labels={
            k: render_label(gen.labels.get(k, f"{k}.%%"), list(v))
            for k, v in gen.parameters.items()
        },
        names={k: names.get(k, k) for k in gen.parameters},
    )


class PgenError(Exception):
    pass


class _Env:
    """What a pgen's `env` argument offers in Maestro: `find(name).value`."""

    @dataclass
    class _Var:
        name: str
        value: Any

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._vars = dict(variables)

    def find(self, name: str) -> _Env._Var | None:
        return self._Var(name, self._vars[name]) if name in self._vars else None


def _maestro_shim() -> None:
    """Let pgens that `from maestrowf.datastructures.core import ParameterGenerator` import."""
    try:
        import maestrowf.datastructures.core  # noqa: F401

        return
    except ImportError:
        pass
    for name in ("maestrowf", "maestrowf.datastructures", "maestrowf.datastructures.core"):
        mod = sys.modules.setdefault(name, types.ModuleType(name))
        mod.ParameterGenerator = ParameterGenerator  # type: ignore[attr-defined]


def run_pgen(file: Path, variables: Mapping[str, Any], kwargs: Mapping[str, str]) -> ParameterSet:
    """Import a pgen file and call its `get_custom_generator(env, **kwargs)`."""
    if not file.is_file():  # never import a FIFO or a device: it would hang or never end
        what = "is not a regular file" if file.exists() else "no such parameter generator file"
        raise PgenError(f"{file}: {what}")
    _maestro_shim()
    spec = importlib.util.spec_from_file_location(f"reconciler_pgen_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise PgenError(f"{file}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        factory = getattr(module, "get_custom_generator", None)
        if factory is None:
            raise PgenError(f"{file}: defines no get_custom_generator(env, **kwargs)")
        gen = factory(_Env(variables), **kwargs)
    except PgenError:
        raise
    except Exception as e:  # the user's code: report, never a traceback
        raise PgenError(f"{file}: the parameter generator raised {type(e).__name__}: {e}") from e
    if not hasattr(gen, "parameters") or not hasattr(gen, "labels"):
        raise PgenError(f"{file}: get_custom_generator did not return a ParameterGenerator")
    return from_generator(gen)
