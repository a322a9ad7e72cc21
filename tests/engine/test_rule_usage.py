"""Every rule ID the engine acts on is in a definition of the pathway, and every correction
it asks about is one it knows.

(Whether a refusal can be overridden is the rule's strength there: see
tests/pathways/test_definitions.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pathways
from engine.corrections import CORRECTIONS

ENGINE = Path(__file__).resolve().parents[2] / "engine"
RULE_ID = re.compile(
    r'"((?:PH|CONS|FU|IMG|SP|ESI|PRF|SURG|SDM|REHAB|SCS|REF|RF|ORD|MED|NCS|PRED|EP)'
    r'-[A-Z0-9-]+)"'
)
CORRECTS = re.compile(r'corrects\(\s*"([A-Z0-9-]+)"')


def named_in_engine(pattern: re.Pattern[str]) -> set[str]:
    return {
        match
        for path in ENGINE.glob("*.py")
        if path.name not in ("rules.py", "corrections.py")
        for match in pattern.findall(path.read_text())
    }


def test_every_rule_the_engine_names_is_registered() -> None:
    rules = {
        rule_id
        for version in pathways.version_numbers(pathways.LUMBOSACRAL_RADICULOPATHY)
        for rule_id in pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, version).rules
    }
    used = named_in_engine(RULE_ID) - set(CORRECTIONS)
    assert used, "the engine names no rule at all"
    missing = sorted(used - rules)
    assert not missing, f"rules used by the engine but in no version: {missing}"


def test_every_correction_the_engine_asks_about_is_known_and_in_the_newest_version() -> None:
    asked = named_in_engine(CORRECTS)
    assert asked
    assert asked <= set(CORRECTIONS), sorted(asked - set(CORRECTIONS))
    newest = pathways.version_numbers(pathways.LUMBOSACRAL_RADICULOPATHY)[-1]
    included = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, newest).corrections
    assert set(CORRECTIONS) <= set(included), sorted(set(CORRECTIONS) - set(included))
