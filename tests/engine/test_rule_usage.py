"""Every rule ID the engine acts on is in the registry, with the strength it acts with."""

from __future__ import annotations

import re
from pathlib import Path

from engine.rules import RULES, Strength

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


def test_guards_that_refuse_are_registered_as_refusals() -> None:
    source = (ENGINE / "guards.py").read_text()
    refused = set(re.findall(r'refuse\(\s*"([A-Z0-9-]+)"', source))
    refused |= set(re.findall(r'_early_window\([^)]*"([A-Z0-9-]+)"', source, re.S))
    refused |= set(re.findall(r'_failed_adequate_care\([^)]*"([A-Z0-9-]+)"', source, re.S))
    assert "ESI-GUIDED" in refused
    for rule_id in refused:
        assert RULES[rule_id].strength in (Strength.REFUSE, Strength.REFUSE_WITH_OVERRIDE), rule_id
