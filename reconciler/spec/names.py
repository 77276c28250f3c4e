"""Names on disk: study names, and the file names derived from instance names (pure logic).

Study names, one rule for `validate`, `run` and GitOps alike.

A study's name becomes a directory name — `<name>_<timestamp>` for `run`, `<name>` under the
studies root in GitOps mode — and the engine's log, `logs/<name>.log`; it is printed in
tables, logs and pull-request comments, and keys the study in a repository. So a name must
fit in a file name with the longest suffix reconciler appends and hold no control characters.
Names are compared in Unicode NFC, so `café` typed as one code point or as `e` + combining
accent is one study. The directory name is Maestro's safe path of the name; a name that
leaves nothing usable there (`///`, `..`, `日本語`) gets `study-<hash of the name>` instead.

Instance file names, as Maestro 1.2.1 forms them, in one place so that what writes a file
(setup, reshape) and what reads it (the engine, resume, restart, the pool, status, tests)
cannot disagree:

- every name goes through `safe_name`: instance directories, scripts and output files (Maestro
  sanitises the directory and the script, but not the restart script or the local output
  files, so a label with a `:` crashes it there; we sanitise every one of them);
- `script_name`: `<instance>.sh` for a local study; a scheduled study names *every* step's
  scripts after its scheduler, scheduled or not: `<instance>.slurm.sh`, `.lsf.sh`, `.flux.sh`
  (and `.pbs.sh` for our PBS adapter), with `<instance>.restart.<suffix>` for `restart:`;
- `job_name`: the scheduler job name in a header (`--job-name`, `-J`): the instance name with
  spaces turned into `_`, and nothing else changed, as Maestro writes it;
- `local_output`: the local adapter's `<instance>.<pid>.out`/`.err` (one pair per attempt).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

NAME_MAX = 255  # bytes in a file name (Linux, macOS)
# The longest suffix reconciler appends to a study's directory name: `run`'s `_<timestamp>`
# (`_YYYYmmdd-HHMMSS`); `.log` is shorter.
LONGEST_SUFFIX = len("_YYYYmmdd-HHMMSS")
MAX_BYTES = NAME_MAX - LONGEST_SUFFIX
# Unicode categories that print as nothing or move the text around: control (Cc), format (Cf:
# bidi overrides, zero-width characters), surrogates, private use, unassigned, line and
# paragraph separators.
_CONTROL = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


_UNSAFE = re.compile(r"[^A-Za-z0-9\-_.() ]")


def safe_name(text: str) -> str:
    """Maestro's make_safe_path: keep `[A-Za-z0-9-_.() ]`, then spaces become `_`."""
    return _UNSAFE.sub("", text).replace(" ", "_")


def normal_name(name: str) -> str:
    """The name as it is compared and stored (Unicode NFC)."""
    return unicodedata.normalize("NFC", name)


def study_dir(name: str) -> str:
    """The directory name of a study in GitOps mode: Maestro's safe path of its NFC name, or,
    when that is empty, `.` or `..`, a name made from its hash (never the root or a parent)."""
    nfc = normal_name(name)
    safe = safe_name(nfc)
    if safe in ("", ".", ".."):
        return "study-" + hashlib.sha256(nfc.encode()).hexdigest()[:12]
    return safe


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a study (one sentence), or None when it can."""
    for ch in name:
        if unicodedata.category(ch) in _CONTROL:
            return (
                f"description.name contains the control character U+{ord(ch):04X}; a study "
                "name is printed in tables and logs and names its directory: remove it"
            )
    size = len(normal_name(name).encode())
    if size > MAX_BYTES:
        return (
            f"description.name is {size} bytes long; the study's directory name "
            f"('<name>_<timestamp>') must fit in {NAME_MAX} bytes, so a name may have at most "
            f"{MAX_BYTES}: shorten it"
        )
    return None


# -- instance file names ------------------------------------------------------------------

# Maestro's script extensions (maestrowf 1.2.1's adapters; PBS has none there: ours follows suit).
SCRIPT_SUFFIX: dict[str, str] = {
    "local": ".sh",
    "slurm": ".slurm.sh",
    "lsf": ".lsf.sh",
    "flux": ".flux.sh",
    "pbs": ".pbs.sh",
}


def script_suffix(batch_type: str, *, restart: bool = False) -> str:
    suffix = SCRIPT_SUFFIX.get(batch_type, ".sh")
    return f".restart{suffix}" if restart else suffix


def script_name(instance: str, batch_type: str = "local", *, restart: bool = False) -> str:
    """The file name of an instance's script (or restart script)."""
    return safe_name(instance) + script_suffix(batch_type, restart=restart)


def job_name(instance: str) -> str:
    """Maestro's scheduler job name: the instance name with spaces turned into underscores."""
    return instance.replace(" ", "_")


def local_output(instance: str, pid: int | str, stream: str = "out") -> str:
    """The local adapter's output file of one attempt: `<instance>.<pid>.out` (or `.err`)."""
    return f"{safe_name(instance)}.{pid}.{stream}"


def exit_name(instance: str) -> str:
    """Where a local or pooled job's end is recorded: `<instance>.exit` (ours, not Maestro's)."""
    return safe_name(instance) + ".exit"


def longest_suffix(batch_type: str) -> str:
    """The longest suffix an instance's file names get: `<instance>.restart<suffix>` (an
    output's `.<pid>.out` is shorter)."""
    return script_suffix(batch_type, restart=True)


__all__ = [
    "MAX_BYTES",
    "NAME_MAX",
    "SCRIPT_SUFFIX",
    "exit_name",
    "job_name",
    "local_output",
    "longest_suffix",
    "name_problem",
    "normal_name",
    "safe_name",
    "script_name",
    "script_suffix",
    "study_dir",
]
