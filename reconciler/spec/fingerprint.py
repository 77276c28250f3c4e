"""Fingerprints: a content hash of everything that decides an instance's result.

Inputs are canonical JSON (sorted keys), so the same spec content gives the same fingerprint on
any machine and in any workspace: location tokens ($(OUTPUT_PATH), $(SPECROOT)) stay symbolic.
Descriptions are left out on purpose: rewording a step must not rerun it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

VERSION = 1  # bump when the inputs change, so old records read as "fingerprint changed"


def fingerprint(**inputs: Any) -> str:
    blob = json.dumps({"v": VERSION, **inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
