"""The desired state: every spec under the specs directory at a revision of a git repo.

By default specs are read from the commit's tree (committed content only, never the dirty work
tree); `worktree=True` reads the files on disk instead, for trying a change before committing
it. Each spec is loaded on its own, so one invalid spec never hides the others: it comes back
with its `SpecError`, and its study keeps whatever was applied last.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from reconciler.deps import harden
from reconciler.spec import SpecError, Study, load_study_text
from reconciler.spec.diagnostics import Collector
from reconciler.spec.load import MAX_BYTES, decode, parse_yaml, read_spec_bytes
from reconciler.spec.names import name_problem, normal_name
from reconciler.spec.size import MAX_INSTANCES

SPEC_SUFFIXES = (".yaml", ".yml")
# Regular files only: a symlink's blob (mode 120000) holds its target path, not a spec.
_FILE_MODES = (0o100644, 0o100755)


class RepoError(Exception):
    """A user-fixable problem with the repository, revision or specs directory."""


@dataclass
class SpecFile:
    """One spec at one revision: where it is, its content, and what loading it gave."""

    path: str  # repo-relative, with '/' separators
    text: str | None  # None when the bytes are not UTF-8 text (see `error`)
    blob: str  # git's blob id of the content (what `git hash-object` prints)
    study: Study | None = None
    error: SpecError | None = None
    name: str | None = None  # description.name; best effort when the spec is invalid
    max_instances: int | None = MAX_INSTANCES  # the limit it was loaded with (see spec/size.py)

    @property
    def ok(self) -> bool:
        return self.study is not None

    def load(self, dependency_shas: Mapping[str, str] | None = None) -> Study:
        """The study again with pinned dependency SHAs in its fingerprints."""
        if self.text is None:
            assert self.error is not None
            raise self.error
        return load_study_text(
            self.text, self.path, dependency_shas=dependency_shas, max_instances=self.max_instances
        )


@dataclass
class Revision:
    """Every spec of one revision, with studies keyed by `description.name`."""

    sha: str | None  # None when read from the work tree
    specs: list[SpecFile] = field(default_factory=list)

    @property
    def studies(self) -> dict[str, SpecFile]:
        """Valid and invalid specs by study name (specs whose name is unknown are left out)."""
        return {s.name: s for s in self.specs if s.name is not None}

    @property
    def unnamed(self) -> list[SpecFile]:
        """Specs too broken to tell which study they mean."""
        return [s for s in self.specs if s.name is None]


class SpecSource:
    """Specs in a git repository (found from `path` or any directory below its root)."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ".",
        *,
        specs_dir: str | os.PathLike[str] = "specs",
        worktree: bool = False,
        max_instances: int = MAX_INSTANCES,
    ) -> None:
        self.max_instances = max_instances
        try:
            self.repo = harden(git.Repo(path, search_parent_directories=True))
        except (InvalidGitRepositoryError, NoSuchPathError) as e:
            raise RepoError(
                f"{os.fspath(path)} is not inside a git repository; GitOps mode reads specs "
                "from one (use `run` for a single spec file)."
            ) from e
        self.worktree = worktree
        if worktree and self.repo.bare:
            raise RepoError(f"{self.repo.git_dir} is a bare repository: it has no work tree.")
        self.specs_dir = self._relative(specs_dir)

    @property
    def root(self) -> Path:
        """The work tree's top directory (the git dir for a bare repository)."""
        return Path(self.repo.working_tree_dir or self.repo.git_dir)

    def _relative(self, specs_dir: str | os.PathLike[str]) -> str:
        """The specs directory as a repo-relative posix path; it must be inside the repo."""
        raw = Path(specs_dir)
        if raw.is_absolute():
            try:
                raw = raw.resolve().relative_to(self.root.resolve())
            except ValueError as e:
                raise RepoError(f"--specs {specs_dir} is outside the repository {self.root}") from e
        rel = PurePosixPath(raw.as_posix())
        if ".." in rel.parts:
            raise RepoError(f"--specs {specs_dir} leaves the repository; give a path inside it")
        return "" if str(rel) == "." else str(rel)

    # ---- revisions ------------------------------------------------------------------------

    @property
    def branch(self) -> str | None:
        """The current branch, or None on a detached HEAD."""
        try:
            return self.repo.active_branch.name
        except TypeError:
            return None

    def resolve(self, revision: str | None = None) -> str:
        """A revision (default HEAD: the tip of the current branch) as a full commit SHA."""
        rev = revision or "HEAD"
        if rev.startswith("-"):
            raise RepoError(f"revision '{rev}' looks like an option, not a commit")
        try:
            # git itself, not GitPython's rev_parse: in a shallow clone GitPython names the
            # parent of the oldest commit (HEAD~1) although its object is not there.
            return str(self.repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}"))
        except (BadName, ValueError, GitCommandError) as e:
            if rev == "HEAD" and not self.repo.head.is_valid():
                raise RepoError(
                    f"{self.root} has no commits yet; commit the specs first (or use --worktree)."
                ) from e
            raise RepoError(f"'{rev}' is not a commit of {self.root}{self._shallow_hint()}") from e

    def _shallow_hint(self) -> str:
        if not (Path(self.repo.common_dir) / "shallow").exists():
            return ""
        return (
            " (this clone is shallow: older commits are not here; fetch them with "
            "`git fetch --unshallow`, or `git fetch --deepen N`, or clone with enough depth)"
        )

    # ---- specs ----------------------------------------------------------------------------

    def read(self, revision: str | None = None, *, unique: bool = True) -> Revision:
        """Every spec under the specs directory: at `revision`, or on disk with `worktree`.

        Raises RepoError when the specs directory does not exist there (a mistyped --specs
        must not read as "every study was deleted"), or, with `unique`, when two specs name
        the same study (plan and apply make that those specs' error instead, and go on with
        the others).
        """
        if self.worktree:
            if revision is not None:
                raise RepoError("--worktree reads the files on disk; it takes no revision")
            result = Revision(None, list(self._from_worktree()))
        else:
            sha = self.resolve(revision)
            result = Revision(sha, [self._load(p, t) for p, t in self._from_commit(sha)])
        if unique:
            _check_unique(result.specs)
        return result

    def _from_commit(self, sha: str) -> Iterator[tuple[str, bytes]]:
        tree = self.repo.commit(sha).tree
        if self.specs_dir:
            try:
                tree = tree / self.specs_dir
            except KeyError as e:
                raise RepoError(
                    f"there is no directory '{self.specs_dir}' at commit {sha[:12]} of "
                    f"{self.root} (see --specs)"
                ) from e
            if tree.type != "tree":
                raise RepoError(f"'{self.specs_dir}' at commit {sha[:12]} is not a directory")
        blobs = [
            b
            for b in tree.traverse()
            if b.type == "blob" and b.mode in _FILE_MODES and b.path.endswith(SPEC_SUFFIXES)
        ]
        for blob in sorted(blobs, key=lambda b: b.path):
            # One byte over the cap is enough for `decode` to refuse it: never all of a huge blob.
            yield blob.path, blob.data_stream.read(MAX_BYTES + 1)

    def _from_worktree(self) -> Iterator[SpecFile]:
        base = self.root / self.specs_dir
        if not base.is_dir():
            raise RepoError(f"there is no directory '{self.specs_dir or '.'}' in {self.root}")
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            # Never the repository's own metadata; symlinks are skipped as in the tree.
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in filenames:
                full = Path(dirpath) / name
                if name.endswith(SPEC_SUFFIXES) and not full.is_symlink():
                    found.append(full.relative_to(self.root).as_posix())
        ignored = set(self.repo.ignored(*found)) if found else set()
        for rel in sorted(found):
            if rel in ignored:  # what .gitignore hides is not desired state
                continue
            out = Collector(rel)
            raw = read_spec_bytes(str(self.root / rel), out)  # never a FIFO or a device
            if raw is None:
                yield SpecFile(rel, None, "", error=SpecError(out.items),
                               max_instances=self.max_instances)  # fmt: skip
            else:
                yield self._load(rel, raw)

    def _load(self, path: str, raw: bytes) -> SpecFile:
        blob = blob_id(raw, self._object_format())
        out = Collector(path)
        text = decode(raw, out)
        limit = self.max_instances
        if text is None:
            return SpecFile(path, None, blob, error=SpecError(out.items), max_instances=limit)
        try:
            study = load_study_text(text, path, max_instances=limit)
        except SpecError as e:
            return SpecFile(path, text, blob, error=e, name=_guess_name(text, path),
                            max_instances=limit)  # fmt: skip
        return SpecFile(path, text, blob, study=study, name=study.name, max_instances=limit)

    def _object_format(self) -> str:
        with self.repo.config_reader("repository") as cr:
            return str(cr.get_value("extensions", "objectformat", default="sha1"))


def blob_id(data: bytes, object_format: str = "sha1") -> str:
    """git's object id of a blob with this content (`git hash-object` without filters)."""
    h = hashlib.sha256() if object_format == "sha256" else hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _guess_name(text: str, path: str) -> str | None:
    """description.name of a spec that failed to load, so its study can show the error."""
    parsed = parse_yaml(text, Collector(path))
    data: Any = parsed[0] if parsed else None
    desc = data.get("description") if isinstance(data, dict) else None
    name = desc.get("name") if isinstance(desc, dict) else None
    if not isinstance(name, str) or not name or name_problem(name) is not None:
        return None  # a name no study can have names none: the spec is known by its path
    return normal_name(name)


def _check_unique(specs: list[SpecFile]) -> None:
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for s in specs:
        if s.name is None:
            continue
        if s.name in seen:
            clashes.append(f"'{s.name}' in both {seen[s.name]} and {s.path}")
        else:
            seen[s.name] = s.path
    if clashes:
        raise RepoError(
            "two specs name the same study (description.name must be unique in a repo): "
            + "; ".join(clashes)
            + ". Rename one; nothing was applied."
        )


def ensure_excluded(repo: git.Repo, pattern: str = ".reconciler/") -> bool:
    """Add `pattern` to .git/info/exclude unless it is there. True if a line was added.

    Local state (caches, checkouts) must never show as untracked files or be committed, and
    info/exclude does that without touching the user's .gitignore.
    """
    exclude = Path(repo.common_dir) / "info" / "exclude"
    lines = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
    if pattern in (ln.strip() for ln in lines):
        return False
    exclude.parent.mkdir(parents=True, exist_ok=True)
    prefix = "" if not lines or exclude.read_bytes().endswith(b"\n") else "\n"
    with exclude.open("a", encoding="utf-8") as fh:
        fh.write(f"{prefix}{pattern}\n")
    return True


__all__ = ["RepoError", "Revision", "SpecFile", "SpecSource", "blob_id", "ensure_excluded"]
