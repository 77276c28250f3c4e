"""reconciler: run Maestro-format HPC studies and keep them converged to a git repo of specs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reconciler")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
