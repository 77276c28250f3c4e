"""Write a file in a study workspace without ever following a symlink planted there.

Steps run in the workspace and may leave anything behind, including a symlink where
reconciler later writes: `<spec>.yaml`, `batch.info`, `meta/*.yaml`, `logs/<study>.log`,
`status.csv`, an instance's script or exit record. Writing through such a link would write
outside the workspace (`~/.bashrc`, another study's record). So every file reconciler writes
in a workspace goes through this module:

- the directories from the workspace root down to the file's are opened one by one with
  O_NOFOLLOW | O_DIRECTORY (made if missing): a symlink or a file where a directory should be
  is refused (`UnsafePath`), never followed — the root itself may be a symlink, since the user
  chose it;
- the file is written under a temporary name opened with O_CREAT | O_EXCL | O_NOFOLLOW in that
  directory and renamed over the final name: rename replaces a symlink there, the link's target
  is never touched, and readers never see half a file;
- files that are appended to (logs) or rewritten in place are opened with O_NOFOLLOW: a link
  there is removed (the link, not its target) and a regular file made.

All of it works on directory file descriptors (openat), so a step that swaps a directory for a
link while reconciler writes cannot redirect the write either. Standard library only: the
shepherd processes and every layer use it (see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A symlink, or something that is not a directory, where the workspace needs one."""


def _refuse(path: Path, what: str) -> UnsafePath:
    return UnsafePath(
        f"{path} is {what}, not the directory reconciler made (replaced by a step?); nothing "
        "was written through it. Remove it and run again"
    )


@contextlib.contextmanager
def open_dir(root: Path, rel: Path | str = ".", *, create: bool = True) -> Iterator[int]:
    """A file descriptor of the directory `root/rel`, reached without following a symlink
    below `root` (made, mode 0777 less the umask, when `create` and missing)."""
    with Dirs(root, create=create) as dirs, dirs.open(rel) as fd:
        yield fd


class Dirs:
    """Directories under one root, reached without following a symlink below the root. The
    parents of what is opened stay open until the block ends: writing 10,000 instances'
    scripts under one step directory opens that directory once, not 10,000 times (and only
    the instance's own directory, closed after use, costs a descriptor each)."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.create = create
        self._fds: dict[tuple[str, ...], int] = {}

    def __enter__(self) -> Dirs:
        # The root itself may be a symlink: the user chose it.
        self._fds[()] = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    @contextlib.contextmanager
    def open(self, rel: Path | str) -> Iterator[int]:
        """The directory `root/rel` (see `open_dir`), open for the block."""
        parts = tuple(p for p in str(rel).split("/") if p not in ("", "."))
        if ".." in parts:
            raise ValueError(f"{rel} leaves {self.root}")
        if not parts:
            yield self._fds[()]
            return
        parent = self._parent(parts[:-1])
        fd = self._child(parent, parts[-1], parts)
        try:
            yield fd
        finally:
            os.close(fd)

    def _parent(self, parts: tuple[str, ...]) -> int:
        known = len(parts)
        while parts[:known] not in self._fds:  # the nearest directory already open
            known -= 1
        fd = self._fds[parts[:known]]
        for i in range(known, len(parts)):
            fd = self._fds[parts[: i + 1]] = self._child(fd, parts[i], parts[: i + 1])
        return fd

    def _child(self, fd: int, part: str, path: tuple[str, ...]) -> int:
        if self.create:  # mkdir first: in a new workspace it is missing, and EEXIST is cheap
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _refuse(self.root.joinpath(*path), _kind(part, fd)) from None
            raise


def _kind(name: str, fd: int) -> str:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return "not a directory"
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink (to {os.readlink(name, dir_fd=fd)})"
    return "not a directory"


def _split(root: Path, path: Path) -> tuple[Path, str]:
    """(directory relative to root, file name) of a path inside root."""
    rel = Path(os.path.relpath(path, root)) if path.is_absolute() else path
    if rel.parts[:1] == ("..",) or not rel.name or rel.name in (".", ".."):
        raise ValueError(f"{path} is not a file inside {root}")
    return rel.parent, rel.name


def write(root: Path, path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Write `path` (inside `root`) whole: a temporary file renamed over it. `mode`: exact
    permissions (default: 0666 less the umask, as open() makes them)."""
    folder, name = _split(root, path)
    raw = data.encode() if isinstance(data, str) else data
    with open_dir(root, folder) as dfd:
        tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666 if mode is None else mode, dir_fd=dfd)
        try:
            try:
                _write_all(fd, raw)
                if mode is not None:
                    os.fchmod(fd, mode)  # exactly, whatever the umask
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link, never follows
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise


def open_in(dfd: int, name: str, flags: int, mode: int = 0o666) -> int:
    """Open `name` in the directory `dfd` with O_NOFOLLOW; a symlink there is removed (the link,
    not its target) and a regular file made in its place."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, mode, dir_fd=dfd)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
    os.unlink(name, dir_fd=dfd)
    return os.open(name, flags | os.O_CREAT | os.O_EXCL, mode, dir_fd=dfd)


def open_file(root: Path, path: Path, flags: int, mode: int = 0o666) -> int:
    """A file descriptor of `path` inside `root` (see `open_in`), its directories checked."""
    folder, name = _split(root, path)
    with open_dir(root, folder) as dfd:
        return open_in(dfd, name, flags, mode)


def append(root: Path, path: Path) -> int:
    """`path` opened for appending (a log), created if missing, never through a link."""
    return open_file(root, path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def open_nofollow(path: str | bytes | os.PathLike[str], flags: int, mode: int = 0o666) -> int:
    """Open `path` with O_NOFOLLOW on its last component only, for processes that know a path
    but not its workspace (a shepherd): a link there is removed and a regular file made."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)


def _write_all(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        view = view[os.write(fd, view) :]


def mkdirs(root: Path, rel: Path | str) -> None:
    """Make `root/rel` (and its parents) as real directories; a symlink on the way is refused."""
    with open_dir(root, rel):
        pass


__all__ = ["Dirs", "UnsafePath", "append", "mkdirs", "open_dir", "open_file", "open_in",
           "open_nofollow", "write"]  # fmt: skip
