"""Spec text → validated `Spec`, with every error placed at FILE:LINE:COL.

ruamel.yaml (round-trip) keeps line:col for every key, value and item; pydantic validates. Errors
from either are rewritten in our own words and positioned on the offending key or value.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    ScalarEvent,
    StreamEndEvent,
)
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from reconciler.spec.diagnostics import Collector
from reconciler.spec.model import Batch, Spec

Path = tuple[str | int, ...]

# Guards against hostile documents: alias bombs and absurd nesting. Enforced while parsing
# (see `_precheck` and `_CappedComposer`), so a document over a cap costs at most the cap's work.
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
            yaml = _yaml("safe")
            if "CParser" in getattr(yaml.Parser, "__name__", ""):
                _event_positions(yaml.Parser(text), self)  # C speed: ~15x the round trip
            else:
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


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def _key_text(event: ScalarEvent) -> str:
    """A scalar key as `_to_plain` names it (str() of what YAML 1.1 resolves it to)."""
    value = str(event.value)
    if not (event.implicit and event.implicit[0]):
        return value  # quoted or tagged: the text itself
    if _PYYAML_BOOL.match(value):
        return str(value.lower() in ("yes", "true", "on"))
    if value in _NULLS:
        return "None"
    return value


def _event_positions(parser: Any, pos: Positions) -> None:
    """Record where every key and value starts from the parser's events alone: the places the
    round-trip parse records (`_to_plain` of its nodes), without building a document."""
    _PositionWalker(pos).walk(parser)


class _PositionWalker:
    """Paths and positions from a stream of events. Aliased content is placed where its anchor
    wrote it, as the round trip does: what is recorded inside an anchored node is kept (relative
    to it) and replayed under every path that aliases it."""

    def __init__(self, pos: Positions) -> None:
        self.pos = pos
        # One frame per open collection: [path or None (not tracked), is_map, expecting a key,
        # current key, its position, next item index, anchor recording or None]
        self.stack: list[list[Any]] = []
        # anchor -> (where its node is placed, what was recorded inside it)
        self.anchors: dict[str, tuple[tuple[int, int], list[tuple[bool, Path, Any]]]] = {}
        self.recording: list[tuple[Path, list[tuple[bool, Path, tuple[int, int]]]]] = []
        self.budget = MAX_NODES  # replays of nested aliases multiply: the same cap as _to_plain

    def record(self, is_key: bool, path: Path, where: tuple[int, int]) -> None:
        (self.pos.keys if is_key else self.pos.values)[path] = where
        for base, entries in self.recording:
            if path[: len(base)] == base:
                entries.append((is_key, path[len(base) :], where))

    def walk(self, parser: Any) -> None:
        while True:
            event = parser.get_event()
            if isinstance(event, StreamEndEvent):
                return
            if isinstance(event, CollectionEndEvent):
                frame = self.stack.pop()
                if frame[6] is not None:
                    self.recording.pop()
                self.after_node()
                continue
            if isinstance(event, ScalarEvent | CollectionStartEvent | AliasEvent):
                self.node(event)

    def node(self, event: Any) -> None:
        where = (event.start_mark.line + 1, event.start_mark.column + 1)
        path = self.place(event, where)
        anchor = getattr(event, "anchor", None)
        if isinstance(event, AliasEvent):
            anchored = self.anchors.get(str(event.anchor))
            if path is not None and anchored is not None:
                if path:  # the round trip places an alias where its anchor is written
                    self.record(False, path, anchored[0])
                for is_key, rel, at in anchored[1]:
                    self.budget -= 1
                    if self.budget < 0:
                        raise _TooBig("alias expansion")
                    self.record(is_key, (*path, *rel), at)
            self.after_node()
            return
        entries: list[tuple[bool, Path, tuple[int, int]]] | None = None
        if anchor is not None and path is not None:
            entries = []
            self.anchors[str(anchor)] = (self.pos.values.get(path, where), entries)
        if isinstance(event, CollectionStartEvent):
            if entries is not None:
                self.recording.append((path, entries))  # type: ignore[arg-type]
            is_map = isinstance(event, MappingStartEvent)
            self.stack.append([path, is_map, True, None, None, 0, entries])
        else:
            self.after_node()

    def place(self, event: Any, where: tuple[int, int]) -> Path | None:
        """This node's path (None: not tracked), recording its position in its parent."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        parent, is_map = frame[0], frame[1]
        if parent is None:
            return None
        if is_map and frame[2]:  # a key
            key = _key_text(event) if isinstance(event, ScalarEvent) else None
            frame[3], frame[4] = key, where
            if key is not None:
                self.record(True, (*parent, key), where)
            return None  # a key's own content is never looked up
        if is_map:  # the value of the current key
            if frame[3] is None:
                return None
            path = (*parent, frame[3])
            null = (
                isinstance(event, ScalarEvent)
                and bool(event.implicit and event.implicit[0])
                and str(event.value) in _NULLS
            )
            self.record(False, path, frame[4] if null else where)
            return path
        path = (*parent, frame[5])
        self.record(False, path, where)
        return path

    def after_node(self) -> None:
        """A node ended: its mapping now expects the other of key/value, a list the next item."""
        if not self.stack:
            return
        frame = self.stack[-1]
        if frame[1]:
            frame[2] = not frame[2]
        else:
            frame[5] += 1


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

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # One Tag per tag name: ruamel makes a new one per scalar and decodes its name again on
        # first use, a quarter of the load of a big sweep.
        tag = super().resolve(kind, value, implicit)
        if tag is None or tag.handle is not None:
            return tag
        tags: dict[Any, Any] = self.__dict__.setdefault("_tags", {})
        return tags.setdefault(tag.suffix, tag)


class _FastConstructor(SafeConstructor):
    """The safe constructor with a short path for plain decimal integers (a sweep's values):
    ruamel's general one asks for the YAML version twice per integer."""

    def construct_yaml_int(self, node: Any) -> int:
        value = node.value
        if isinstance(value, str) and value.isascii() and value.isdigit() and value[0] != "0":
            return int(value)
        return int(super().construct_yaml_int(node))


_FastConstructor.add_constructor("tag:yaml.org,2002:int", _FastConstructor.construct_yaml_int)


def _yaml(typ: str) -> YAML:
    yaml = YAML(typ=typ, pure=typ == "rt")
    yaml.version = (1, 1)  # Maestro reads specs with PyYAML (YAML 1.1): `yes` is true, etc.
    yaml.Resolver = _MaestroResolver
    if typ == "safe":
        yaml.Constructor = _FastConstructor
    yaml.allow_duplicate_keys = False
    return yaml


def _round_trip() -> YAML:
    yaml = _yaml("rt")
    yaml.Composer = _CappedComposer
    return yaml


def _too_many() -> _TooBig:
    return _TooBig(f"the document has more than {MAX_NODES:,} values and collections")


def _too_deep() -> _TooBig:
    return _TooBig(f"the document is nested more than {MAX_DEPTH} levels deep")


class _CappedComposer(Composer):
    """The round-trip composer, refusing a document as soon as it passes a cap (not after
    building all of it: a 15 MiB flat list would take minutes and gigabytes)."""

    _nodes = 0
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._nodes += 1
        self._depth += 1
        try:
            if self._nodes > MAX_NODES:
                raise _too_many()
            if self._depth > MAX_DEPTH + 1:  # +1: the document's top node is level 0
                raise _too_deep()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _needs_precheck(text: str) -> bool:
    """Could this text pass a cap while the C composer builds it? Below MAX_NODES characters
    it cannot have more nodes than that, and the C composer recurses once per level of
    flow nesting (`[[[…` crashes it past some ten thousand), which needs `[` or `{`; block
    nesting is bounded by indentation (16 MiB allows ~5,800 levels, which it handles)."""
    return len(text) > MAX_NODES or text.count("[") + text.count("{") > MAX_DEPTH


def _precheck(yaml: YAML, text: str) -> None:
    """Walk the parser's events (no nodes built) and raise _TooBig at the first cap passed.
    The C parser keeps its own stack, so even absurd nesting is safe to walk."""
    parser = yaml.Parser(text)
    nodes = depth = 0
    while True:
        event = parser.get_event()
        if isinstance(event, ScalarEvent):
            nodes += 1
        elif isinstance(event, CollectionStartEvent):
            nodes += 1
            depth += 1
            if depth > MAX_DEPTH + 1:  # as _CappedComposer counts: the top node is level 0
                raise _too_deep()
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        elif isinstance(event, StreamEndEvent):
            return
        elif isinstance(event, AliasEvent):
            continue  # shared, not built again; _to_plain counts what it expands to
        if nodes > MAX_NODES:
            raise _too_many()


def _fast_parse(text: str) -> tuple[Any, Positions] | None:
    """The C loader (ruamel.yaml.clib), ~5x faster on big sweeps; None if it is unavailable
    or finds a problem (the round-trip parse then reports it with its position)."""
    try:
        yaml = _yaml("safe")
        if "CParser" not in getattr(yaml.Parser, "__name__", ""):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel's warnings are not for spec authors
            if _needs_precheck(text):
                _precheck(yaml, text)
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


def read_spec_bytes(file: str, out: Collector) -> bytes | None:
    """The bytes of a spec file, or None with the reason in `out`.

    Only a regular file is read (a symlink to one is followed: the user named it). A FIFO, a
    device such as /dev/zero or a directory is refused before a byte is read, and no more than
    MAX_BYTES + 1 bytes are ever read, so a file that grows while it is read cannot exhaust
    memory either. O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer.
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        why = "it is a directory" if e.errno == errno.EISDIR else (e.strerror or str(e))
        out.error(f"cannot read the spec: {why}")
        return None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            out.error(f"cannot read the spec: it is {_file_kind(mode)}, not a regular file")
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as e:
        out.error(f"cannot read the spec: {e.strerror or e}")
        return None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


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
    "retries": "an integer from 0 to 1000",
    "throttle": "an integer from 0 (no limit) to 1,000,000",
    "backoff": "a number of seconds from 0 to 86400 (one day)",
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
