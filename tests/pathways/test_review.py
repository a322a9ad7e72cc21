"""What changed between two versions, rule by rule and number by number."""

from __future__ import annotations

import pathways
from engine.definition import parse_definition
from pathways.review import diff
from tests.pathways.test_definitions import DEFAULT_NAMES, V1, edit_rule


def test_diff_names_each_rule_and_number_that_changed() -> None:
    old = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")
    text = edit_rule("MED-STEROID", 'strength = "advisory"', 'strength = "warn"')
    text = text.replace("high_vas = 7\n", "high_vas = 6\n", 1).replace(
        'version = "1.0.0"', 'version = "1.1.0"'
    )
    start = text.index('[[rules]]\nid = "SP-STENOSIS"')
    added = text[start:].replace('id = "SP-STENOSIS"', 'id = "IMG-PLEXUS-TRAUMA"', 1)
    new = parse_definition((text + "\n" + added).encode(), "1.1.0.toml", DEFAULT_NAMES)
    changes = diff(old, new)
    assert (changes["from"], changes["to"]) == ("1.0.0", "1.1.0")
    assert changes["rules"]["changed"] == [
        {"rule": "MED-STEROID", "fields": {"strength": {"from": "advisory", "to": "warn"}}}
    ]
    assert [r["id"] for r in changes["rules"]["added"]] == ["IMG-PLEXUS-TRAUMA"]
    assert changes["rules"]["removed"] == []
    assert changes["defaults"]["changed"] == {"high_vas": {"from": 7, "to": 6}}
    assert V1.count("high_vas = 7") == 1
