"""Every rule ID the pathway's code acts on is declared
(pathways/lumbosacral_radiculopathy/rules_used.py), so that loading a
definition checks it holds them; and every correction it asks about is one it knows.

(Whether a refusal can be overridden is the rule's strength there: see
tests/pathways/test_definitions.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pathways
from engine.definition import DefinitionError, parse_definition
from pathways.lumbosacral_radiculopathy.corrections import CORRECTIONS
from pathways.lumbosacral_radiculopathy.rules_used import ALWAYS, BY_CORRECTION, used_by

ROOT = Path(__file__).resolve().parents[2]
# The engine's mechanics and the pathway's own code: every module that could name a rule.
CODE = (ROOT / "engine", ROOT / "pathways" / "lumbosacral_radiculopathy")
RULE_ID = re.compile(
    r'"((?:PH|CONS|FU|IMG|SP|ESI|PRF|SURG|SDM|REHAB|SCS|REF|RF|ORD|MED|NCS|PRED|EP)'
    r'-[A-Z0-9-]+)"'
)
CORRECTS = re.compile(r'corrects\(\s*"([A-Z0-9-]+)"')


def named_in_engine(pattern: re.Pattern[str]) -> set[str]:
    return {
        match
        for folder in CODE
        for path in folder.glob("*.py")
        if path.name not in ("rules.py", "corrections.py", "rules_used.py")
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


def test_the_declared_rules_are_the_ones_the_engine_names() -> None:
    named = named_in_engine(RULE_ID)
    declared = ALWAYS.union(*BY_CORRECTION.values())
    assert named - set(CORRECTIONS) <= declared, sorted(named - set(CORRECTIONS) - declared)
    assert declared <= named, sorted(declared - named)  # nothing declared the code dropped
    assert set(BY_CORRECTION) <= set(CORRECTIONS)


def test_every_shipped_version_holds_the_rules_the_engine_acts_on_for_it() -> None:
    for version in pathways.version_numbers(pathways.LUMBOSACRAL_RADICULOPATHY):
        loaded = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, version)
        assert set(loaded.rules) >= ALWAYS
        for correction in loaded.corrections:
            assert BY_CORRECTION.get(correction, frozenset()) <= set(loaded.rules)


def test_a_definition_without_a_rule_the_engine_acts_on_is_refused_at_load() -> None:
    package = pathways.PACKAGES[pathways.LUMBOSACRAL_RADICULOPATHY]
    content = pathways.resources.files(package).joinpath("1.0.0.toml").read_bytes()
    renamed = content.replace(b'id = "RF-CES"', b'id = "RF-CAUDA"')
    assert renamed != content
    parse_definition(content, "1.0.0.toml", rules_used=used_by)  # as shipped: it loads
    with pytest.raises(DefinitionError) as refused:
        parse_definition(renamed, "1.0.0.toml", rules_used=used_by)
    assert "the engine acts on rules this version lacks: RF-CES" in str(refused.value)
    # A correction's rules are needed only by the versions that include it.
    assert "SURG-ELECTIVE" in used_by(["SURG-ELECTIVE"])
    assert "SURG-ELECTIVE" not in used_by([])
