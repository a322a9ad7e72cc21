"""The rule IDs the pathway's code acts on, checked against each definition as it loads.

The guards refuse, warn and note by rule ID, the handlers and the advisories name the rules
that acted and the recommendations they give: a definition without one of them would have
the code act on a rule nobody can read, sign off or cite. Loading a definition
(:func:`engine.definition.parse_definition`) checks that it holds every rule here its version
needs: those the code always acts on, and those of each correction it includes.
``tests/engine/test_rule_usage.py`` holds this list to the rule IDs the code names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

ALWAYS = frozenset(
    {
        "CONS-ADEQUATE", "ESI-6W", "ESI-CONFIRM", "ESI-GUIDED", "ESI-TF", "FU-3M", "FU-6W",
        "FU-ACTIVE", "FU-CONTENT", "FU-ELDERLY", "FU-FIRST", "FU-RESPONSE", "IMG-3M",
        "IMG-6W", "IMG-CORRELATE", "IMG-FIRST", "IMG-FLEX", "IMG-NO-EARLY", "MED-NEURO",
        "MED-OPIOID", "MED-STEROID", "NCS-CHRONIC", "ORD-SPECIALIST", "PH-ACUTE",
        "PH-CHRONIC", "PH-SUBACUTE", "PRED-FEMALE", "PRED-HIGH-VAS", "PRED-PRIOR-LBP",
        "PRED-SLR", "PRED-WORKCOMP", "PRF-DRG", "REF-2W-DEFICIT", "REF-2W-SEVERE", "REF-3M",
        "REF-BPS", "REHAB-MDT", "RF-CES", "RF-MARKERS", "RF-PROG", "RF-SERIOUS", "SCS-POSTOP",
        "SDM-CHOICE", "SP-BILATERAL", "SP-CTD", "SP-PELVIC", "SP-PLEXUS", "SP-STENOSIS",
        "SURG-6W-POSIMG", "SURG-CRIT", "SURG-DISC", "SURG-NO-FUSION",
    }
)  # fmt: skip
"""Acted on by every version."""

BY_CORRECTION: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "EP-FINAL": frozenset({"EP-FINAL"}),
        "IMG-PLEXUS-TRAUMA": frozenset({"IMG-PLEXUS-TRAUMA"}),
        "SURG-ELECTIVE": frozenset({"SURG-ELECTIVE"}),
    }
)
"""Acted on only by the versions that include the correction (its code asks for it)."""


def used_by(corrections: Iterable[str]) -> frozenset[str]:
    """The rules the engine acts on for a version with these ``corrections``."""
    return ALWAYS.union(*(BY_CORRECTION.get(c, frozenset()) for c in corrections))
