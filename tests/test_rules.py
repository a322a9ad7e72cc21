"""The rule registry against the clinical specification (``shared/PATHWAY.md``) and the seeds.

PATHWAY.md is parsed, not copied: every rule ID it mentions must be in the registry, each
citation must name a source the specification gives for that rule, conflicts and defaults the
specification marks must be present, and no rule text may reuse an 8-word run of the sources.
Version 1.1.0's citations, each a statement of its document, are held to the seeds too: every
reference number is one the document gives, and no statement reuses an 8-word run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

import pathways
from engine.settings import PathwayDefaults
from pathways.lumbosacral_radiculopathy.rules import (
    DOCUMENTS,
    RECOMMENDED_CARE,
    RULES,
    Citation,
    Strength,
    cite,
    rule,
)

# An ID: two or more capitals, then hyphenated parts. A wildcard such as "REF-2W-*" is not one.
ID_RE = re.compile(r"(?<![\w-])[A-Z]{2,}(?:-[A-Z0-9]+)+(?![\w*-])")
# A source token; "L5/S1" (a spinal level) is not one.
SOURCE_RE = re.compile(r"(?<![\w/-])S[0-4](?![\w/-])")
SENTENCE_END_RE = re.compile(r"\.\s+(?=[A-Z])")
CONFLICT_MARK = "**conflict**"
DEFAULT_MARK = "**default**"


def _shared_dir() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared"]
    env = os.environ.get("CAREPATH_SHARED_DIR")
    if env:
        candidates.append(Path(env))
    for candidate in candidates:
        if (candidate / "PATHWAY.md").is_file():
            return candidate
    return None


@dataclass
class Spec:
    """What the tests need from PATHWAY.md."""

    text: str
    ids: list[str] = field(default_factory=list)
    documents: dict[str, str] = field(default_factory=dict)
    # rule ID -> the sources the specification gives for it
    sources: dict[str, set[str]] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)
    defaults: set[str] = field(default_factory=set)
    # rule ID -> the full text of its own table row
    rows: dict[str, str] = field(default_factory=dict)
    # rule ID -> the guard strength its row states
    strengths: dict[str, Strength] = field(default_factory=dict)
    # rule ID -> number of ';'-separated care activities in the Phases table
    care_counts: dict[str, int] = field(default_factory=dict)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _row_strength(row: str) -> Strength | None:
    low = row.lower()
    if "no override" in low:
        return Strength.REFUSE
    if "refuse" in low:
        return Strength.REFUSE_WITH_OVERRIDE
    if "warn" in low:
        return Strength.WARN
    if "advisory" in low:
        return Strength.ADVISORY
    return None


def _paragraphs(lines: list[str]) -> list[str]:
    """Group the prose (non-table) lines into paragraphs and list items, joined by spaces."""
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        starts_item = bool(re.match(r"(-|\d+\.)\s", stripped))
        if not stripped or stripped.startswith(("#", "|")) or starts_item:
            if current:
                out.append(" ".join(current))
                current = []
            if starts_item:
                current.append(stripped)
            continue
        current.append(stripped)
    if current:
        out.append(" ".join(current))
    return out


def parse_spec(text: str) -> Spec:
    """Parse PATHWAY.md into the facts the tests check."""
    spec = Spec(text=text)
    for m in ID_RE.finditer(text):
        if m.group() not in spec.ids:
            spec.ids.append(m.group())
    spec.documents = {m.group(1): m.group(2) for m in re.finditer(r"(S[0-4]) `([^`]+\.txt)`", text)}
    sources: dict[str, set[str]] = {rid: set() for rid in spec.ids}
    lines = text.splitlines()
    section = ""
    for line in lines:
        if line.startswith("## "):
            section = line
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if not cells or not ID_RE.fullmatch(cells[0]):
            continue
        rid = cells[0]
        spec.rows[rid] = line
        row_sources = set(SOURCE_RE.findall(cells[-1])) or set(SOURCE_RE.findall(line))
        sources[rid] |= row_sources
        if CONFLICT_MARK in line.lower():
            spec.conflicts.add(rid)
        if DEFAULT_MARK in line.lower():
            spec.defaults.add(rid)
        strength = _row_strength(" ".join(cells[1:]))
        if strength is not None:
            spec.strengths[rid] = strength
        if "Phases" in section:
            spec.care_counts[rid] = len([a for a in cells[2].split(";") if a.strip()])
    # Rules defined only inside another rule's row (SURG-6W-POSIMG): the stretch of the cell
    # after the mention, up to the next ID.
    for line in lines:
        if not line.startswith("|"):
            continue
        for cell in _cells(line)[1:]:
            mentions = list(ID_RE.finditer(cell))
            for i, m in enumerate(mentions):
                if m.group() in spec.rows:
                    continue
                end = mentions[i + 1].start() if i + 1 < len(mentions) else len(cell)
                sources[m.group()] |= set(SOURCE_RE.findall(cell[m.end() : end]))
    # Rules defined in prose: the stretch after each mention up to the next ID or sentence end.
    prose = [ln for ln in lines if not ln.startswith("|")]
    for paragraph in _paragraphs(prose):
        mentions = list(ID_RE.finditer(paragraph))
        for i, m in enumerate(mentions):
            rid = m.group()
            end = mentions[i + 1].start() if i + 1 < len(mentions) else len(paragraph)
            stop = SENTENCE_END_RE.search(paragraph, m.end(), end)
            segment = paragraph[m.end() : stop.end() if stop else end]
            found = set(SOURCE_RE.findall(segment))
            if not found and rid not in spec.rows:
                found = set(SOURCE_RE.findall(paragraph))
            sources[rid] |= found
            if CONFLICT_MARK in segment.lower():
                spec.conflicts.add(rid)
            if DEFAULT_MARK in segment.lower():
                spec.defaults.add(rid)
            if "advisory" in segment.lower():
                spec.strengths.setdefault(rid, Strength.ADVISORY)
    spec.sources = sources
    return spec


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    found = _shared_dir()
    if found is None:
        pytest.skip(
            "PATHWAY.md not found: expected ../shared/PATHWAY.md next to the project or "
            "$CAREPATH_SHARED_DIR/PATHWAY.md"
        )
    return found


# Where the corrections of a later pathway version begin. The registry under test is
# version 1.0.0, so it is held to the specification above this heading only; a later
# version's rules are that version's to carry.
LATER_VERSION_HEADING = re.compile(r"^## Version (?!1\.0\.0\b)", re.MULTILINE)


def version_1_0_0(text: str) -> str:
    """PATHWAY.md as far as version 1.0.0 goes: everything before a later version's section."""
    later = LATER_VERSION_HEADING.search(text)
    return text if later is None else text[: later.start()]


@pytest.fixture(scope="module")
def spec(shared_dir: Path) -> Spec:
    return parse_spec(version_1_0_0((shared_dir / "PATHWAY.md").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def seeds(shared_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for source, name in DOCUMENTS.items():
        path = shared_dir / "seeds" / name
        if not path.is_file():
            pytest.skip(f"seed document {path} not found")
        out[source] = path.read_text(encoding="utf-8")
    return out


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _ngrams(words: list[str], n: int = 8) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


# ---- the parser itself, on facts read by hand from PATHWAY.md ------------------------------


def test_parser_reads_known_facts(spec: Spec) -> None:
    assert len(spec.ids) >= 52
    assert "REF-2W" not in spec.ids  # "REF-2W-*" is a wildcard, not a rule
    assert spec.sources["IMG-FLEX"] == {"S2"}
    assert spec.sources["SURG-6W-POSIMG"] == {"S3"}
    assert spec.sources["CONS-ADEQUATE"] == {"S0", "S2"}
    assert spec.sources["SP-BILATERAL"] == {"S2"}
    assert spec.sources["FU-CONTENT"] == {"S2", "S3"}
    assert spec.sources["FU-RESPONSE"] == set()
    assert spec.sources["MED-NEURO"] == {"S0", "S1", "S2", "S4"}
    assert spec.conflicts >= {"REF-2W-DEFICIT", "SURG-CRIT", "MED-NEURO"}
    assert spec.defaults >= {"RF-CES", "MED-OPIOID", "FU-RESPONSE", "PRED-HIGH-VAS"}
    assert spec.strengths["ESI-GUIDED"] is Strength.REFUSE
    assert spec.documents == dict(DOCUMENTS)


# ---- completeness ---------------------------------------------------------------------------


def test_every_pathway_id_is_registered(spec: Spec) -> None:
    missing = [rid for rid in spec.ids if rid not in RULES]
    assert not missing, f"rule IDs in PATHWAY.md missing from the rules of 1.0.0: {missing}"


def test_no_rule_outside_pathway(spec: Spec) -> None:
    extra = [rid for rid in RULES if rid not in spec.ids]
    assert not extra, f"rules not in PATHWAY.md: {extra}"


def test_briefed_ids_present() -> None:
    # The list the registry was commissioned with, independent of the parser.
    expected = [
        "PH-ACUTE", "PH-SUBACUTE", "PH-CHRONIC", "CONS-ADEQUATE", "FU-6W", "IMG-6W", "IMG-3M",
        "IMG-FLEX", "SP-PLEXUS", "ESI-6W", "ESI-CONFIRM", "ESI-TF", "PRF-DRG", "SURG-DISC",
        "SDM-CHOICE", "REHAB-MDT", "SCS-POSTOP", "REF-2W-SEVERE", "REF-2W-DEFICIT", "REF-3M",
        "REF-BPS", "SURG-CRIT", "SURG-6W-POSIMG", "RF-CES", "RF-PROG", "RF-SERIOUS", "RF-MARKERS",
        "IMG-NO-EARLY", "ORD-SPECIALIST", "ESI-GUIDED", "IMG-CORRELATE", "SURG-NO-FUSION",
        "MED-OPIOID", "MED-NEURO", "MED-STEROID", "IMG-FIRST", "NCS-CHRONIC", "FU-FIRST",
        "FU-ACTIVE", "FU-3M", "FU-ELDERLY", "FU-CONTENT", "FU-RESPONSE", "PRED-PRIOR-LBP",
        "PRED-SLR", "PRED-FEMALE", "PRED-WORKCOMP", "PRED-HIGH-VAS", "SP-CTD", "SP-PELVIC",
        "SP-BILATERAL", "SP-STENOSIS",
    ]  # fmt: skip
    assert [rid for rid in expected if rid not in RULES] == []
    assert list(RULES) == expected  # PATHWAY.md order, section by section


@pytest.mark.parametrize("rid", list(RULES))
def test_rule_is_well_formed(rid: str) -> None:
    r = RULES[rid]
    assert r.id == rid
    assert r.title.strip()
    assert r.text.strip()
    assert isinstance(r.strength, Strength)
    assert len(r.citations) >= 1, f"{rid} has no citation"


# ---- citations ------------------------------------------------------------------------------


@pytest.mark.parametrize("rid", list(RULES))
def test_citations_match_pathway_sources(rid: str, spec: Spec) -> None:
    r = RULES[rid]
    allowed = spec.sources.get(rid, set())
    for c in r.citations:
        assert c.source in DOCUMENTS, f"{rid}: unknown source {c.source}"
        assert c.document == spec.documents[c.source], f"{rid}: {c.source} is not {c.document}"
        if allowed:
            assert c.source in allowed, f"{rid}: PATHWAY.md gives {sorted(allowed)}, not {c.source}"
    if not allowed:
        # PATHWAY.md gives no source ("-"): the numbers are ours, and must say so.
        assert r.default, f"{rid} has no source in PATHWAY.md, so its default must explain it"


def _reference_list(seed: str) -> list[str]:
    """The entries of a seed's reference list (one string per entry), empty when it has none."""
    lines = [ln.strip() for ln in seed.splitlines()]
    if "References" not in lines:
        return []
    tail = lines[lines.index("References") + 1 :]
    entries: list[str] = []
    for i, ln in enumerate(tail):
        if ln in ("Guideline", "Research"):
            rest = [x for x in tail[i + 1 :] if x][:2]
            entries.append(" ".join(rest))
    return entries


def _sentence_refs(seed: str) -> set[int]:
    """Every reference number a seed attaches to a statement (trailing '1, 2' on a line)."""
    nums: set[int] = set()
    for ln in seed.splitlines():
        m = re.search(r"(?:\s|\.)((?:\d{1,2}, )*\d{1,2})\s*\.?$", ln.strip())
        if m:
            nums.update(int(n) for n in m.group(1).split(", "))
    return nums


@pytest.mark.parametrize("rid", list(RULES))
def test_references_exist_in_documents(rid: str, seeds: dict[str, str]) -> None:
    for c in RULES[rid].citations:
        seed = seeds[c.source]
        listed = _reference_list(seed)
        m = re.fullmatch(r"(.+) \[ref (\d+)\]", c.reference)
        if m:
            number = int(m.group(2))
            assert number <= len(listed), f"{rid}: {c.source} lists no reference {number}"
            title = _words(m.group(1).split(", ")[0])
            entry = _words(re.sub(r"^\d+\. ", "", listed[number - 1]))
            assert entry[: len(title)] == title, (
                f"{rid}: {c.source} reference {number} is {listed[number - 1]!r}, not {title!r}"
            )
        else:
            m2 = re.fullmatch(
                rf"{c.source} reference (\d+) \(not listed in the document\)", c.reference
            )
            assert m2, f"{rid}: malformed reference {c.reference!r}"
            number = int(m2.group(1))
            assert number > len(listed), f"{rid}: {c.source} does list reference {number}"
            assert number in _sentence_refs(seed), f"{rid}: {c.source} never cites {number}"


def test_cite_format() -> None:
    lines = cite("SURG-NO-FUSION")
    assert (
        "S2 (002_6b2d115242e3efa1.txt): Medical Necessity of Lumbar Fusion, Praxis Medical "
        "Insights, 2025 [ref 2]"
    ) in lines
    assert "S0 (000_b802428f9beaff9b.txt): S0 reference 1 (not listed in the document)" in lines
    assert len(lines) == len(RULES["SURG-NO-FUSION"].citations)
    assert str(Citation("S4", DOCUMENTS["S4"], "x")) == f"S4 ({DOCUMENTS['S4']}): x"


# ---- conflicts, defaults, strengths, figures ------------------------------------------------


def test_conflicts_are_stated(spec: Spec) -> None:
    # CONS-ADEQUATE: S2 stricter than S0, the engine applies S2 (PATHWAY.md, management track).
    for rid in spec.conflicts | {"CONS-ADEQUATE"}:
        r = RULES[rid]
        assert r.conflict, f"{rid} is marked conflict in PATHWAY.md but has no conflict text"
        named = set(SOURCE_RE.findall(r.conflict))
        assert len(named) >= 2, f"{rid}: conflict text names {sorted(named)}, needs two sources"
        cited = {c.source for c in r.citations}
        assert named <= cited, f"{rid}: conflict names {sorted(named - cited)} without citing"


def test_defaults_are_stated(spec: Spec) -> None:
    for rid in spec.defaults:
        assert RULES[rid].default, f"{rid} has a **default** in PATHWAY.md but no default text"


def test_default_texts_name_real_settings() -> None:
    known = {f.name for f in fields(PathwayDefaults)}
    for r in RULES.values():
        if r.default is None:
            continue
        named = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", r.default))
        assert named, f"{r.id}: default text names no PathwayDefaults field"
        assert named <= known, f"{r.id}: unknown settings field(s) {sorted(named - known)}"


def test_strengths_follow_pathway(spec: Spec) -> None:
    for rid, strength in spec.strengths.items():
        assert RULES[rid].strength is strength, f"{rid}: PATHWAY.md says {strength}"
    assert [r.id for r in RULES.values() if r.strength is Strength.REFUSE] == ["ESI-GUIDED"]


def test_figures_carried_into_texts(spec: Spec) -> None:
    for rid, row in spec.rows.items():
        figures = re.findall(r"\d+\.\d+|\d+(?:-\d+)?%", row)
        for figure in figures:
            assert figure in RULES[rid].text, f"{rid}: rule text lacks {figure!r}"
    assert "71%" in RULES["SP-PLEXUS"].text


# ---- own words ------------------------------------------------------------------------------


def _own_texts() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for r in RULES.values():
        for label, value in (
            ("title", r.title),
            ("text", r.text),
            ("conflict", r.conflict),
            ("default", r.default),
        ):
            if value:
                out.append((f"{r.id}.{label}", value))
    for rid, phrases in RECOMMENDED_CARE.items():
        out.extend((f"RECOMMENDED_CARE[{rid}]", p) for p in phrases)
    return out


def test_no_text_copies_the_sources(seeds: dict[str, str]) -> None:
    seed_grams: set[tuple[str, ...]] = set()
    for seed in seeds.values():
        seed_grams |= _ngrams(_words(seed))
    copied = []
    for where, value in _own_texts():
        for gram in sorted(_ngrams(_words(value)) & seed_grams):
            copied.append(f"{where}: {' '.join(gram)}")
    assert not copied, "rule texts copy 8-word runs from the sources:\n" + "\n".join(copied)


# ---- version 1.1.0: each citation a statement of its document --------------------------------

V1_1 = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.1.0")


def test_no_citation_statement_copies_the_sources(seeds: dict[str, str]) -> None:
    seed_grams: set[tuple[str, ...]] = set()
    for seed in seeds.values():
        seed_grams |= _ngrams(_words(seed))
    copied = []
    # As written (numbers by name) and as shown (numbers filled in).
    for rules in (V1_1.templates, V1_1.rules):
        for r in rules.values():
            for c in r.citations:
                assert c.supports, f"{r.id}: a citation without its statement"
                for gram in sorted(_ngrams(_words(c.supports)) & seed_grams):
                    copied.append(f"{r.id} ({c.source}): {' '.join(gram)}")
    assert not copied, "citations copy 8-word runs from the sources:\n" + "\n".join(copied)


@pytest.mark.parametrize("rid", list(V1_1.rules))
def test_1_1_0_reference_numbers_are_the_ones_the_documents_give(
    rid: str, seeds: dict[str, str]
) -> None:
    for c in V1_1.rules[rid].citations:
        if c.source not in seeds:  # CR: the specification itself
            continue
        seed = seeds[c.source]
        listed = _reference_list(seed)
        ours = V1_1.references.get(c.source, {})
        assert len(ours) == len(listed), f"{c.source} lists {len(listed)} references"
        for number in c.refs:
            if number in ours:
                title = _words(ours[number].split(", ")[0])
                entry = _words(re.sub(r"^\d+\. ", "", listed[number - 1]))
                assert entry[: len(title)] == title, (
                    f"{rid}: {c.source} reference {number} is {listed[number - 1]!r}"
                )
            else:
                assert number > len(listed), f"{rid}: {c.source} does list reference {number}"
                assert number in _sentence_refs(seed), f"{rid}: {c.source} never cites {number}"


@pytest.mark.parametrize("rid", list(RULES))
def test_1_1_0_cites_the_sources_pathway_gives(rid: str, spec: Spec) -> None:
    allowed = spec.sources.get(rid, set())
    cited = {c.source for c in V1_1.rules[rid].citations} - {"CR"}  # CR: a correction's own
    if allowed:
        assert cited <= allowed, f"{rid}: PATHWAY.md gives {sorted(allowed)}, not {cited}"


# ---- recommended care ------------------------------------------------------------------------


def test_recommended_care(spec: Spec) -> None:
    expected = {
        "PH-ACUTE", "PH-SUBACUTE", "PH-CHRONIC", "SP-CTD", "SP-PELVIC", "SP-BILATERAL",
        "SP-PLEXUS", "SP-STENOSIS", "FU-ELDERLY",
    }  # fmt: skip
    assert set(RECOMMENDED_CARE) == expected
    for rid, phrases in RECOMMENDED_CARE.items():
        assert rid in RULES
        assert phrases
        assert all(p.strip() for p in phrases)
    for rid, count in spec.care_counts.items():
        assert len(RECOMMENDED_CARE[rid]) == count, f"{rid}: PATHWAY.md lists {count} activities"


# ---- lookup ---------------------------------------------------------------------------------


def test_lookup() -> None:
    assert rule("ESI-GUIDED") is RULES["ESI-GUIDED"]
    with pytest.raises(KeyError, match="NOPE"):
        rule("NOPE")
    with pytest.raises(KeyError, match="NOPE"):
        cite("NOPE")


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        RULES["X-Y"] = RULES["ESI-GUIDED"]  # type: ignore[index]
