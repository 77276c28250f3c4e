"""Spec text → validated `Spec`, with every error placed at FILE:LINE:COL.

ruamel.yaml (round-trip) keeps line:col for every key, value and item; pydantic validates. Errors
from either are rewritten in our own words and positioned on the offending key or value.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from reconciler.spec.diagnostics import Collector
from reconciler.spec.model import Batch, Spec

Path = tuple[str | int, ...]

# Guards against hostile documents: alias bombs and absurd nesting.
MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_BYTES = 16 * 1024 * 1024

TOP_LEVEL = ("description", "env", "batch", "study", "global.parameters", "reconcile")


@dataclass
class Positions:
    """1-based (line, col) of each key and value in the document, by path.

    Filled lazily from `text` on the first lookup: a valid spec is parsed once by the fast C
    loader, and only a spec with something to report pays for the round-trip parse.
    """

    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    text: str | None = None
    lines: list[str] = field(default_factory=list)  # the source, to place text inside values

    def _fill(self) -> None:
        if self.text is None:
            return
        text, self.text = self.text, None
        # The fast parse accepted this text already; positions are a courtesy.
        with contextlib.suppress(YAMLError, _TooBig, RecursionError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _to_plain(_round_trip().load(text), (), self, [MAX_NODES])

    def key(self, path: Path) -> tuple[int, int] | None:
        """Where the key of `path` is written (or the nearest enclosing thing that is)."""
        self._fill()
        for i in range(len(path), -1, -1):
            p = path[:i]
            if p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
        return None

    def value(self, path: Path) -> tuple[int, int] | None:
        self._fill()
        return self.values.get(path) or self.key(path)

    def within(self, path: Path, value: str, needle: str) -> tuple[int, int] | None:
        """Where `needle` is written inside the string value at `path` (block scalars too)."""
        where = self.value(path)
        offset = value.find(needle)
        if where is None or offset < 0 or not 0 < where[0] <= len(self.lines):
            return where
        line, col = where
        src = self.lines[line - 1]
        indicator = src[col - 1] if 0 < col <= len(src) else ""
        before = value[:offset]
        if indicator in ("|", ">"):  # block scalar: content starts on the next line
            row = line + 1 + before.count("\n")
            if row > len(self.lines):
                return where
            text = self.lines[row - 1]
            indent = len(text) - len(text.lstrip(" "))
            return (row, indent + offset - (before.rfind("\n") + 1) + 1)
        if "\n" in before:
            return where  # a multi-line flow scalar: the value's start is close enough
        return (line, col + offset + (1 if indicator in ("'", '"') else 0))


@dataclass
class Loaded:
    spec: Spec
    data: dict[str, Any]  # plain data as validated (after conversion from ruamel types)
    positions: Positions


class _TooBig(Exception):
    pass


def _to_plain(node: Any, path: Path, pos: Positions, budget: list[int], depth: int = 0) -> Any:
    """Convert ruamel's round-trip types to plain Python, recording positions as we go."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(f"the document expands to more than {MAX_NODES:,} nodes (an alias bomb?)")
    if depth > MAX_DEPTH:
        raise _TooBig(f"the document is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for k, v in node.items():
            key = str(k) if not isinstance(k, str) else k
            child = (*path, key)
            try:
                kl, kc = node.lc.key(k)
                pos.keys[child] = (kl + 1, kc + 1)
                vl, vc = node.lc.value(k)
                # A null value has no token of its own: ruamel points past it, so use the key.
                pos.values[child] = (vl + 1, vc + 1) if v is not None else (kl + 1, kc + 1)
            except (KeyError, TypeError):  # merged keys (<<) carry no position of their own
                pass
            out[key] = _to_plain(v, child, pos, budget, depth + 1)
        return out
    if isinstance(node, dict):  # from the fast loader: no positions here
        return {
            (k if isinstance(k, str) else str(k)): _to_plain(v, (), pos, budget, depth + 1)
            for k, v in node.items()
        }
    if isinstance(node, list) and not isinstance(node, CommentedSeq):
        return [_to_plain(v, (), pos, budget, depth + 1) for v in node]
    if isinstance(node, CommentedSeq):
        items = []
        for i, v in enumerate(node):
            child = (*path, i)
            try:
                il, ic = node.lc.item(i)
                pos.values[child] = (il + 1, ic + 1)
            except (KeyError, TypeError):
                pass
            items.append(_to_plain(v, child, pos, budget, depth + 1))
        return items
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if node is None:
        return None
    # Timestamps, binary, sets, tagged scalars: keep their text so validation can name them.
    return str(node)


# PyYAML's YAML 1.1 booleans: unlike ruamel's 1.1 table, a lone y/Y/n/N stays a string.
_PYYAML_BOOL = re.compile(
    r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"
)


class _MaestroResolver(VersionedResolver):
    """YAML 1.1 resolution as PyYAML (which Maestro uses) does it."""

    @property
    def versioned_resolver(self) -> Any:
        # Cached: ruamel recomputes the version for every scalar, a third of a big sweep's load.
        table = getattr(self, "_table", None)
        if table is not None:
            return table
        table = super().versioned_resolver
        if self.processing_version == (1, 1):
            for ch in "yYnN":
                table[ch] = [
                    (tag, _PYYAML_BOOL if tag.endswith(":bool") else rx)
                    for tag, rx in table.get(ch, [])
                ]
        self._table = table
        return table


def _yaml(typ: str) -> YAML:
    yaml = YAML(typ=typ, pure=typ == "rt")
    yaml.version = (1, 1)  # Maestro reads specs with PyYAML (YAML 1.1): `yes` is true, etc.
    yaml.Resolver = _MaestroResolver
    yaml.allow_duplicate_keys = False
    return yaml


def _round_trip() -> YAML:
    return _yaml("rt")


def _fast_parse(text: str) -> tuple[Any, Positions] | None:
    """The C loader (ruamel.yaml.clib), ~5x faster on big sweeps; None if it is unavailable
    or finds a problem (the round-trip parse then reports it with its position)."""
    try:
        yaml = _yaml("safe")
        if "CParser" not in getattr(yaml.Parser, "__name__", ""):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel's warnings are not for spec authors
            doc = yaml.load(text)
        pos = Positions(text=text, lines=text.splitlines())
        return _to_plain(doc, (), pos, [MAX_NODES]), pos
    except _TooBig:
        raise  # a bomb is a bomb in either parser: do not walk it twice
    except (YAMLError, RecursionError, ValueError, TypeError):
        return None


def parse_yaml(text: str, out: Collector) -> tuple[Any, Positions] | None:
    """YAML text → plain data and positions; syntax errors go to `out`."""
    try:
        fast = _fast_parse(text)
    except _TooBig as e:
        out.error(str(e), (1, 1))
        return None
    if fast is not None:
        return fast
    pos = Positions(lines=text.splitlines())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = _round_trip().load(text)
        return _to_plain(doc, (), pos, [MAX_NODES]), pos
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else None
        problem = " ".join(filter(None, [e.context, e.problem])) or "invalid YAML"
        if "duplicate key" in problem or "found duplicate key" in str(e):
            problem = "duplicate key " + _dup_key_name(str(e))
        out.error(f"YAML syntax error: {problem}", where)
    except _TooBig as e:
        out.error(str(e), (1, 1))
    except RecursionError:
        out.error(f"the document is nested more than {MAX_DEPTH} levels deep", (1, 1))
    except ReaderError as e:  # a character YAML forbids, such as NUL: place it in the text
        before = text[: e.position]
        line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        char = e.character if isinstance(e.character, str) else chr(e.character)
        out.error(f"the file contains a character YAML does not allow ({char!r})", (line, col))
    except YAMLError as e:
        out.error(f"YAML error: {' '.join(str(e).split())}", (1, 1))
    return None


def _dup_key_name(msg: str) -> str:
    marker = 'found duplicate key "'
    start = msg.find(marker)
    if start < 0:
        return "(a key appears twice in one mapping)"
    end = msg.find('"', start + len(marker))
    return f"'{msg[start + len(marker) : end]}'"


def decode(raw: bytes, out: Collector) -> str | None:
    """Bytes → text. Non-UTF-8 bytes are an error at their line and column."""
    if len(raw) > MAX_BYTES:
        out.error(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB", (1, 1))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        out.error(f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x})", (line, col))
        return None


def validate_data(data: Any, pos: Positions, out: Collector) -> Spec | None:
    """Plain data → Spec; every pydantic error rewritten and positioned."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        out.error(
            f"a spec must be a YAML mapping with 'description' and 'study'; this is {kind}", (1, 1)
        )
        return None
    for key in data:
        if key not in TOP_LEVEL:
            out.error(
                f"unknown top-level key '{key}' (known: {', '.join(TOP_LEVEL)})", pos.key((key,))
            )
    batch = data.get("batch")
    if isinstance(batch, dict):
        known = Batch.known_keys()
        for key in batch:
            if key not in known:
                out.warn(
                    f"batch key '{key}' is not used by reconciler's adapters; kept as is",
                    pos.key(("batch", key)),
                )
    clean = {k: v for k, v in data.items() if k in TOP_LEVEL}
    try:
        return Spec.model_validate(clean)
    except ValidationError as e:
        for message, where in _explain(e, clean, pos):
            out.error(message, where)
        return None


def load_text(text: str, file: str, out: Collector) -> Loaded | None:
    parsed = parse_yaml(text, out)
    if parsed is None:
        return None
    data, pos = parsed
    spec = validate_data(data, pos, out)
    if spec is None:
        return None
    return Loaded(spec, data, pos)


# ---- pydantic errors in our own words ------------------------------------------------------

_EXPECT = {
    "nodes": "an integer ≥ 1 or '$(VAR)'",
    "procs": "an integer ≥ 1 or '$(VAR)'",
    "cores per task": "an integer ≥ 1 or '$(VAR)'",
    "tasks per rs": "an integer ≥ 1 or '$(VAR)'",
    "rs per node": "an integer ≥ 1 or '$(VAR)'",
    "cpus per rs": "an integer ≥ 1 or '$(VAR)'",
    "gpus": "an integer ≥ 0 or '$(VAR)'",
    "walltime": "a duration string such as '01:30:00', minutes as an integer ≥ 0, or '$(VAR)'",
    "exclusive": "true, false, '$(VAR)' or a mapping {allocation: bool, launcher: bool}",
    "priority": "one of HELD, MINIMAL, LOW, MEDIUM, HIGH, EXPEDITED or a number in 0..1",
    "depends": "a list of step names",
    "values": "a non-empty list of values",
    "label": "a string in which '%%' stands for the value, such as 'SIZE.%%'",
    "study": "a non-empty list of steps",
    "type": "one of local, slurm, lsf, flux, pbs",
    "retries": "an integer ≥ 0",
    "throttle": "an integer ≥ 0 (0 = no limit)",
    "backoff": "a number of seconds ≥ 0",
}


def _walk(data: Any, loc: tuple[Any, ...]) -> tuple[Path, Any, bool]:
    """Follow `loc` into `data` as far as it goes (pydantic adds union-member names)."""
    node, real = data, []
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        else:
            return tuple(real), node, False
        real.append(part)
    return tuple(real), node, True


def _context(path: Path, data: dict[str, Any]) -> str:
    """Say where a path is, in the words a spec author uses."""
    if not path:
        return "the spec"
    head = path[0]
    if head == "study" and len(path) >= 2 and isinstance(path[1], int):
        step = data["study"][path[1]] if isinstance(data.get("study"), list) else None
        name = step.get("name") if isinstance(step, dict) else None
        label = f"study step '{name}'" if name else f"study step #{path[1] + 1}"
        rest = ".".join(str(p) for p in path[2:])
        return f"{rest} of {label}" if rest else label
    if head == "global.parameters" and len(path) >= 2:
        rest = ".".join(str(p) for p in path[2:])
        return f"global.parameters.{path[1]}" + (f".{rest}" if rest else "")
    return ".".join(str(p) for p in path)


def _explain(e: ValidationError, data: dict[str, Any], pos: Positions) -> Iterator[tuple[str, Any]]:
    seen: set[Path] = set()
    for err in e.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        real, value, complete = _walk(data, loc)
        if kind == "extra_forbidden":
            key = loc[-1]
            where = _context(real[:-1] if complete else real, data)
            yield f"unknown key '{key}' in {where}", pos.key(real if complete else (*real, key))
            continue
        if kind == "missing":
            key = loc[-1]
            yield f"key '{key}' is missing from {_context(real, data)}", pos.key(real)
            continue
        if real in seen:  # one message per place, not one per union member
            continue
        seen.add(real)
        field_name = next((p for p in reversed(real) if isinstance(p, str)), "")
        expect = None if "pool" in real[:2] else _EXPECT.get(str(field_name))  # its own rules
        if real and isinstance(real[-1], int) and field_name == "values":
            expect = "a string, a number or true/false (not null)"  # one item of the list
        if len(real) >= 4 and real[0] == "env" and real[1] == "dependencies" and real[-1] == "name":
            expect = "a name of letters, digits and '_' (it is used as $(NAME) and a directory)"
        if real[:2] in (("env", "variables"), ("env", "labels")) and len(real) == 3:
            expect = "a non-empty string or a number"
        shown = "null" if value is None else repr(value)
        if not real:
            yield f"{err['msg']}", (1, 1)
        elif expect:
            yield f"{_context(real, data)} must be {expect}; got {shown}", pos.value(real)
        elif kind == "value_error":  # our validators' words say what is wrong, and why
            why = str((err.get("ctx") or {}).get("error", err["msg"]))
            yield f"{_context(real, data)}: {why}", pos.value(real)
        else:
            msg = err["msg"]
            if kind in ("string_too_short", "too_short"):
                msg = "must not be empty"
            elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
                op = {
                    "greater_than_equal": "≥",
                    "greater_than": ">",
                    "less_than_equal": "≤",
                    "less_than": "<",
                }[kind]
                bound = next(iter((err.get("ctx") or {}).values()), "")
                msg = f"must be {op} {bound}"
            elif kind.endswith("_type") or kind.startswith("string"):
                msg = f"must be {_type_words(kind)}"
            yield f"{_context(real, data)} {msg}; got {shown}", pos.value(real)


def _type_words(kind: str) -> str:
    return {
        "string_type": "a string",
        "int_type": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "dict_type": "a mapping",
        "list_type": "a list",
        "model_type": "a mapping",
    }.get(kind, "a valid value")
