"""Every rule ID the engine acts on is in the pathway's definition.

(Whether a refusal can be overridden is the rule's strength there: see
tests/pathways/test_definitions.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.rules import RULES

ENGINE = Path(__file__).resolve().parents[2] / "engine"
RULE_ID = re.compile(
    r'"((?:PH|CONS|FU|IMG|SP|ESI|PRF|SURG|SDM|REHAB|SCS|REF|RF|ORD|MED|NCS|PRED)'
    r'-[A-Z0-9-]+)"'
)


def test_every_rule_the_engine_names_is_registered() -> None:
    used = {
        match
        for path in ENGINE.glob("*.py")
        if path.name != "rules.py"
        for match in RULE_ID.findall(path.read_text())
    }
    assert used, "the engine names no rule at all"
    missing = sorted(used - set(RULES))
    assert not missing, f"rules used by the engine but not registered: {missing}"
