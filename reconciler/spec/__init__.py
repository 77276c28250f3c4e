"""The desired state: load, validate and expand Maestro-format specs. Pure: no IO beyond
reading the spec text (and running a user's --pgen, which is that option's contract)."""

from reconciler.spec.build import build_study, load_study, load_study_text
from reconciler.spec.diagnostics import Diagnostic, SpecError
from reconciler.spec.instance import Instance, Resources, Study

__all__ = [
    "Diagnostic",
    "Instance",
    "Resources",
    "SpecError",
    "Study",
    "build_study",
    "load_study",
    "load_study_text",
]
