"""The registry of every rule in the pathway specification (``shared/PATHWAY.md``).

Each rule has the stable ID that PATHWAY.md gives it. The engine quotes that ID in guards,
recommendations, reminders and audit rows, and this module keeps, next to the ID, what the rule
says (in our own words, never copied from the sources), how strongly it applies, and where it
comes from: the source document and the reference that document gives for the statement.

Sources (file names under ``shared/seeds/``):

* S0 ``000_b802428f9beaff9b.txt``: treatment overview (numbered references, no list).
* S1 ``001_1e47186070771f48.txt``: next step when initial treatment fails.
* S2 ``002_6b2d115242e3efa1.txt``: chronic bilateral L5/S1 radiculopathy, reinnervation on NCS.
* S3 ``003_ed4495df44311d77.txt``: what to assess at follow-up.
* S4 ``004_522010a50981a15e.txt``: pain radiating to hip, knee and foot (no reference list).

Where the sources disagree, :attr:`Rule.conflict` states both positions, each with its source.
Where a number is ours rather than the sources', :attr:`Rule.default` says so and names the
field of :class:`engine.settings.PathwayDefaults` that configures it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "DOCUMENTS",
    "RECOMMENDED_CARE",
    "RULES",
    "Citation",
    "Rule",
    "Strength",
    "cite",
    "rule",
]


class Strength(StrEnum):
    """How a rule acts on the episode.

    Attributes:
        REFUSE: the order is refused and no override is possible (ESI-GUIDED).
        REFUSE_WITH_OVERRIDE: refused unless a clinician gives a documented, audited reason.
        WARN: accepted, with a warning shown and recorded.
        ADVISORY: information or a suggestion shown to the clinician; never blocks anything.
        TRIGGER: derives a state change, a due item or a marker (phases, red flags, referral
            deadlines, follow-up reviews, risk markers, special-population adjustments).
    """

    REFUSE = "refuse"
    REFUSE_WITH_OVERRIDE = "refuse_with_override"
    WARN = "warn"
    ADVISORY = "advisory"
    TRIGGER = "trigger"


DOCUMENTS: Mapping[str, str] = MappingProxyType(
    {
        "S0": "000_b802428f9beaff9b.txt",
        "S1": "001_1e47186070771f48.txt",
        "S2": "002_6b2d115242e3efa1.txt",
        "S3": "003_ed4495df44311d77.txt",
        "S4": "004_522010a50981a15e.txt",
    }
)
"""The source documents, S-number to seed file name."""

_DR_ORACLE = "Guideline Directed Topic Overview, Dr.Oracle Medical Advisory Board & Editors, 2025"
_PRAXIS = "Praxis Medical Insights, 2025"
_SEMINARS = (
    "The clinical diagnosis of lumbar radiculopathy, Seminars in Ultrasound, CT and MR, 1993"
)

# The reference lists the documents print at their end, in short form. A reference number a
# document uses but does not list (all of S0 and S4; S2 refs 5-7; S3 refs 7-8) is absent here.
_REFERENCE_LISTS: Mapping[str, Mapping[int, str]] = MappingProxyType(
    {
        "S1": {
            1: _DR_ORACLE,
            2: f"Conservative Management of L5-S1 Disc Prolapse, {_PRAXIS}",
            3: "Chronic low back pain: evaluation and management, American Family Physician, 2009",
            4: f"Management of L4 Radiculopathy, {_PRAXIS}",
        },
        "S2": {
            1: _DR_ORACLE,
            2: f"Medical Necessity of Lumbar Fusion, {_PRAXIS}",
            3: f"Management of Chronic Upper Lower Back Pain, {_PRAXIS}",
            4: _SEMINARS,
        },
        "S3": {
            1: f"Lumbosacral Plexopathy Diagnosis and Management, {_PRAXIS}",
            2: f"Lumbar Radiculopathy and Polyneuropathy: Diagnostic Considerations, {_PRAXIS}",
            3: "Lumbosacral radiculopathy, Neurologic Clinics, 2007",
            4: "Lumbosacral radicular pain, Pain Practice, 2010",
            5: _SEMINARS,
            6: f"Insurance Qualifications for MRI in Patients with Lower Back Pain, {_PRAXIS}",
        },
    }
)


@dataclass(frozen=True)
class Citation:
    """Where a rule's statement comes from.

    Attributes:
        source: the source document's S-number, ``"S0"`` to ``"S4"``.
        document: the seed file name of that document.
        reference: the reference the document gives for the statement, in short form, e.g.
            ``"Medical Necessity of Lumbar Fusion, Praxis Medical Insights, 2025 [ref 2]"``, or
            ``"S0 reference 1 (not listed in the document)"`` when the document cites a number
            it does not list.
    """

    source: str
    document: str
    reference: str

    def __str__(self) -> str:
        """Render the citation for people, e.g. ``S2 (002_….txt): <reference>``."""
        return f"{self.source} ({self.document}): {self.reference}"


@dataclass(frozen=True)
class Rule:
    """One rule of the pathway.

    Attributes:
        id: the stable rule ID from PATHWAY.md, e.g. ``"IMG-NO-EARLY"``.
        title: a short title.
        text: what the rule says, in our own words.
        strength: how the rule acts (see :class:`Strength`).
        citations: the sources and references behind it; at least one.
        conflict: for rules where the sources disagree, both positions, each attributed.
        default: for rules with a number of ours, which number is our default and the
            :class:`engine.settings.PathwayDefaults` field that configures it.
    """

    id: str
    title: str
    text: str
    strength: Strength
    citations: tuple[Citation, ...]
    conflict: str | None = None
    default: str | None = None


def _c(source: str, *refs: int) -> tuple[Citation, ...]:
    """Build the citations of one source document, one per reference number.

    Args:
        source: the S-number of the document.
        *refs: the reference numbers the document gives for the statement.

    Returns:
        One :class:`Citation` per reference number, in the order given.
    """
    document = DOCUMENTS[source]
    listed = _REFERENCE_LISTS.get(source, {})
    out: list[Citation] = []
    for ref in refs:
        title = listed.get(ref)
        if title is None:
            reference = f"{source} reference {ref} (not listed in the document)"
        else:
            reference = f"{title} [ref {ref}]"
        out.append(Citation(source=source, document=document, reference=reference))
    return tuple(out)


_S = Strength

_RULE_LIST: tuple[Rule, ...] = (
    # ---- Phases -------------------------------------------------------------------------
    Rule(
        id="PH-ACUTE",
        title="Acute phase (first 6 weeks)",
        text=(
            "From symptom onset until day 42 the episode is in the acute phase. Care centres on "
            "explaining the condition and its usually good outlook, keeping the patient moving "
            "instead of resting in bed, directional-preference exercise, positions held to ease "
            "the pain, heat or cold, and adjusting activities. Medicines: an NSAID first "
            "(acetaminophen as the alternative), a muscle relaxant when there is spasm, and an "
            "opioid only briefly and only for severe pain."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1, 2, 4, 5) + _c("S4", 1),
    ),
    Rule(
        id="PH-SUBACUTE",
        title="Subacute phase (6 to 12 weeks)",
        text=(
            "From day 42 to day 84 after onset the episode is in the subacute phase: nerve-gliding "
            "(neurodynamic) mobilisation joins the strengthening work, together with motor-control "
            "exercise under supervision and core-stability exercise."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 4, 5, 6),
    ),
    Rule(
        id="PH-CHRONIC",
        title="Chronic phase (after 12 weeks)",
        text=(
            "From day 84 after onset the episode is chronic. Care moves to spinal manipulation, "
            "aerobic conditioning with targeted strengthening, training aimed at the tasks the "
            "patient needs to perform, and individual advice on work, ergonomics and posture; "
            "when symptoms stay refractory, multidisciplinary rehabilitation that includes "
            "cognitive behavioural therapy."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 4, 5) + _c("S1", 1) + _c("S2", 2, 4),
    ),
    # ---- Management track ---------------------------------------------------------------
    Rule(
        id="CONS-ADEQUATE",
        title="What counts as failed conservative care",
        text=(
            "Conservative care counts as failed only when the record shows formal physiotherapy "
            "supervised by a therapist for at least 6 weeks, with its dates and the patient's "
            "adherence. Exercises done alone at home, or a programme left unfinished, do not "
            "qualify. The engine applies this stricter standard, tells the clinician so, and "
            "accepts an override that carries a documented reason."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1) + _c("S2", 1, 2),
        conflict=(
            "S2 requires formal, supervised physiotherapy lasting 6 weeks or more, with dates and "
            "adherence on record, before conservative care may be called failed, and says home "
            "exercise alone is not enough. S0 asks only for 6 weeks or more of conservative "
            "management in a broad sense (anti-inflammatory medicine, modified activity and "
            "directional-preference exercise) with no requirement for supervised therapy. The "
            "engine applies S2's standard and allows a documented override."
        ),
    ),
    Rule(
        id="FU-6W",
        title="Review at 6 weeks",
        text=(
            "Six weeks after onset the coordinator receives a review task covering how the "
            "patient has responded, whether an injection or surgery is an option for them, and "
            "what the patient would prefer."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1) + _c("S1", 1, 2) + _c("S3", 6, 8),
        default=(
            "Our default: the review item opens at onset + 42 days and is overdue 7 days later "
            "(review_days_to_complete); an assessment or a candidacy decision in that window "
            "completes it."
        ),
    ),
    Rule(
        id="IMG-6W",
        title="MRI after 6 weeks only for failed care and candidates",
        text=(
            "After 6 weeks, MRI of the lumbar spine without contrast (CT when MRI is not possible) "
            "is allowed only if conservative care has failed by the CONS-ADEQUATE standard and "
            "the patient could be offered an injection or surgery. Otherwise the order is refused "
            "unless a clinician overrides it with a documented reason. A red flag waives this "
            "guard."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1) + _c("S1", 1, 2) + _c("S2", 1) + _c("S3", 8),
    ),
    Rule(
        id="IMG-3M",
        title="Radicular pain beyond 3 months is an imaging indication",
        text=(
            "Radicular pain still present more than 3 months after onset is, in itself, a reason "
            "to image."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 6),
    ),
    Rule(
        id="IMG-FLEX",
        title="Flexion-extension radiographs for suspected instability",
        text=(
            "When spinal instability is suspected, flexion-extension X-rays may be added to the "
            "imaging work-up."
        ),
        strength=_S.ADVISORY,
        citations=_c("S2", 1),
    ),
    Rule(
        id="SP-PLEXUS",
        title="Pain over several dermatomes: consider plexopathy",
        text=(
            "Pain spreading over more than one dermatome, instead of following a single root, "
            "points to a lumbosacral plexopathy, which is managed differently. When radiculopathy "
            "and plexopathy cannot be told apart, consider MRI of the lumbosacral plexus; S3 "
            "reports that this changes management in 71% of such cases. After trauma, plexus "
            "imaging waits about a month so that bleeding and swelling can settle."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 1, 4, 8),
    ),
    Rule(
        id="ESI-6W",
        title="No epidural injection before 6 weeks of failed care",
        text=(
            "An image-guided epidural steroid injection (transforaminal, interlaminar or selective "
            "nerve-root) for persisting radicular pain is for patients whose conservative care "
            "has failed over 6 weeks. Ordered earlier, with no red flag and no severe disabling "
            "pain (REF-2W-SEVERE), it is refused unless a clinician overrides it with a "
            "documented reason."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1, 2) + _c("S1", 1) + _c("S2", 2, 3) + _c("S3", 6, 8),
    ),
    Rule(
        id="ESI-CONFIRM",
        title="Injection target confirmed on imaging",
        text=(
            "The record of an epidural injection has to state that imaging confirmed the "
            "intended target was reached; without that statement the engine refuses the record "
            "unless a clinician documents why (refusal with override is our default strength)."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S1", 1),
    ),
    Rule(
        id="ESI-TF",
        title="Transforaminal injection for subacute radiculopathy below L3",
        text=(
            "For subacute radiculopathy below L3 caused by a contained disc herniation, when "
            "conservative care fails, a transforaminal route is the suggested injection."
        ),
        strength=_S.ADVISORY,
        citations=_c("S3", 6),
    ),
    Rule(
        id="PRF-DRG",
        title="Pulsed radiofrequency at the dorsal root ganglion",
        text=(
            "For chronic radiculopathy that has not responded to other treatment, pulsed "
            "radiofrequency next to the dorsal root ganglion may be considered."
        ),
        strength=_S.ADVISORY,
        citations=_c("S3", 6),
    ),
    Rule(
        id="SURG-DISC",
        title="Discectomy without fusion",
        text=(
            "When one herniated disc compresses a nerve root, shown on imaging, and radicular "
            "symptoms persist despite non-operative care, the operation to consider is a "
            "discectomy alone, without fusion."
        ),
        strength=_S.ADVISORY,
        citations=_c("S0", 1) + _c("S1", 1, 2),
    ),
    Rule(
        id="SDM-CHOICE",
        title="Injection or surgery chosen with the patient",
        text=(
            "Whether to go ahead with an injection or with surgery is decided together with the "
            "patient. The engine records the patient's preference and shows it at the review."
        ),
        strength=_S.ADVISORY,
        citations=_c("S1", 1),
    ),
    Rule(
        id="REHAB-MDT",
        title="Rehabilitation during relief after an intervention",
        text=(
            "While an intervention is giving pain relief, physiotherapy and the wider "
            "multidisciplinary team use that window to rehabilitate the patient, so that fewer "
            "further interventions are needed and quality of life improves."
        ),
        strength=_S.ADVISORY,
        citations=_c("S1", 1),
    ),
    Rule(
        id="SCS-POSTOP",
        title="Spinal cord stimulation after surgery",
        text=(
            "If symptoms continue after an operation or a repeat operation, spinal cord "
            "stimulation may be considered."
        ),
        strength=_S.ADVISORY,
        citations=_c("S1", 1),
    ),
    # ---- Referral -----------------------------------------------------------------------
    Rule(
        id="REF-2W-SEVERE",
        title="Severe disabling pain: refer within 2 weeks",
        text=(
            "Severe pain that disables the patient and stops everyday activities calls for a "
            "specialist referral due within 2 weeks of presentation. An injection or surgery may "
            "then be considered before the 6-week mark if the patient chooses it. Our default: "
            "the 2 weeks run from the finding that triggers the referral."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1, 2) + _c("S1", 1),
    ),
    Rule(
        id="REF-2W-DEFICIT",
        title="Neurological deficit: refer now, deadline 2 weeks",
        text=(
            "A neurological deficit in the root's territory (a motor or sensory change), found "
            "and stable, for instance at the first assessment, makes a specialist referral due "
            "at once, with a deadline 2 weeks after the finding (our default anchor)."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1, 2) + _c("S1", 1),
        conflict=(
            "S1 says a patient with a neurological deficit should be referred immediately; S0 "
            "allows up to 2 weeks. The engine raises the referral at once (S1) and sets its "
            "deadline at 2 weeks (S0)."
        ),
    ),
    Rule(
        id="REF-3M",
        title="Persistent radicular pain: refer by 3 months",
        text=(
            "Radicular pain that persists (not improving by FU-RESPONSE) needs a specialist "
            "referral no later than 3 months after onset, since a later referral prolongs "
            "disability. Once that deadline has passed the referral is overdue and escalates."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1, 2) + _c("S1", 1),
    ),
    Rule(
        id="REF-BPS",
        title="Biopsychosocial assessment before surgical referral",
        text=(
            "A surgical referral needs a documented biopsychosocial assessment first. Without "
            "one, the referral is refused unless a clinician overrides it with a documented "
            "reason; a red flag waives this guard."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1) + _c("S1", 1),
    ),
    Rule(
        id="SURG-CRIT",
        title="Criteria for referral to spine surgery",
        text=(
            "A referral to spine surgery should meet every one of these: comprehensive "
            "conservative care has failed; function is significantly impaired; MRI findings "
            "match the clinical level; the patient is fit for an operation; and imaging "
            "documents instability, spondylolisthesis or severe stenosis. The engine warns when "
            "a criterion is not documented."
        ),
        strength=_S.WARN,
        citations=_c("S0", 1, 2) + _c("S1", 1) + _c("S2", 1, 2, 4) + _c("S3", 3, 6),
        default=(
            "Our default: because the sources disagree on timing, unmet S2 criteria are shown "
            "as a warning on the surgical referral, never a refusal. Significant functional "
            "impairment is taken as an Oswestry score of at least 40 (significant_odi)."
        ),
        conflict=(
            "The sources differ on when to refer for surgery. S2 expects 3-6 months of failed "
            "conservative care first. S0 and S1 refer within 2 weeks for severe disabling pain "
            "or a deficit, and by 3 months for persistent pain. S3 supports a surgical "
            "evaluation once symptoms outlast 6 weeks with positive imaging, above all with a "
            "positive straight-leg raise and earlier back pain (SURG-6W-POSIMG)."
        ),
    ),
    Rule(
        id="SURG-6W-POSIMG",
        title="Surgical evaluation after 6 weeks with positive imaging",
        text=(
            "Symptoms lasting more than 6 weeks, with failed conservative care and imaging that "
            "fits, justify a surgical evaluation; a positive straight-leg raise and earlier low "
            "back pain strengthen the case. This is S3's side of the SURG-CRIT timing conflict."
        ),
        strength=_S.ADVISORY,
        citations=_c("S3", 3, 6),
    ),
    # ---- Red flags ----------------------------------------------------------------------
    Rule(
        id="RF-CES",
        title="Cauda equina syndrome",
        text=(
            "Urinary retention or incontinence, bowel dysfunction, saddle anaesthesia, or "
            "weakness in both legs (from the cauda equina screen or from motor scores on both "
            "sides) signal cauda equina syndrome. This is an emergency: MRI and a surgical "
            "evaluation straight away, with a task due the same day."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1, 2) + _c("S2", 1) + _c("S3", 2, 8) + _c("S4", 1),
        default=(
            "Our default: the emergency task is due 6 hours after the flag is raised (the "
            "sources say only that it is an emergency); configurable as ces_task_hours."
        ),
    ),
    Rule(
        id="RF-PROG",
        title="Progressive neurological deficit",
        text=(
            "A deficit that is getting worse (a motor score below the previous visit's, a "
            "weakness that is new since the first visit, or progression reported by a "
            "clinician; foot drop is the typical example) needs urgent imaging, prompt "
            "reassessment and consideration of a surgical opinion."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1) + _c("S1", 2) + _c("S3", 2, 8),
        default=(
            "Our default: the urgent work-up task is due within 24 hours (the sources say only "
            "urgent or immediate); configurable as urgent_task_hours."
        ),
    ),
    Rule(
        id="RF-SERIOUS",
        title="Suspected serious pathology",
        text=(
            "When a clinician suspects cancer, infection (an abscess included) or a fracture, or "
            "the patient has had significant trauma, urgent imaging is needed."
        ),
        strength=_S.TRIGGER,
        citations=_c("S0", 1) + _c("S2", 1) + _c("S3", 1, 2) + _c("S4", 1),
        default=(
            "Our default: the urgent work-up task is due within 24 hours (the sources say only "
            "urgent); configurable as urgent_task_hours."
        ),
    ),
    Rule(
        id="RF-MARKERS",
        title="Markers of possible serious pathology",
        text=(
            "Fever, pain at night, constant pain that a change of position does not ease, weight "
            "loss, risk factors (osteoporosis, immunosuppression, a history of cancer, recent "
            "trauma), or pain getting worse although treatment has been stepped up: consider "
            "serious disease and advanced imaging. On their own these do not raise a red flag."
        ),
        strength=_S.ADVISORY,
        citations=_c("S3", 1, 2) + _c("S4", 1),
    ),
    # ---- Guards on orders ---------------------------------------------------------------
    Rule(
        id="IMG-NO-EARLY",
        title="No imaging before six weeks",
        text=(
            "Lumbar imaging (MRI, CT or plain X-ray) within 6 weeks of onset brings no benefit "
            "in uncomplicated cases and drives extra care. Without a red flag or severe "
            "disabling pain that first treatment has not helped (REF-2W-SEVERE), the order is "
            "refused; a clinician may override it with a documented reason, which is audited. "
            "The order becomes eligible 42 days after onset."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1) + _c("S1", 2) + _c("S2", 1),
    ),
    Rule(
        id="ORD-SPECIALIST",
        title="Specialist input for MRI and interventions",
        text=(
            "An MRI requested from primary care without specialist input, or an intervention "
            "requested by someone who cannot read the images, draws a warning: for screening "
            "MRI is too sensitive and too unspecific, and misread images risk the wrong "
            "diagnosis or the wrong level."
        ),
        strength=_S.WARN,
        citations=_c("S0", 2) + _c("S1", 1),
    ),
    Rule(
        id="ESI-GUIDED",
        title="No blind epidural injections",
        text=(
            "Epidural injections are done under image guidance, fluoroscopy being the reference "
            "standard. A blind injection is refused, and no override is possible."
        ),
        strength=_S.REFUSE,
        citations=_c("S0", 1, 2) + _c("S1", 1),
    ),
    Rule(
        id="IMG-CORRELATE",
        title="Imaged level must match the clinical level",
        text=(
            "Before an intervention or surgery rests on an imaging finding, the imaged level has "
            "to match the clinical level (a result marked correlates_clinically), because "
            "29-43% of people without symptoms have disc abnormalities. Otherwise the order is "
            "refused unless a clinician overrides it with a documented reason."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1) + _c("S1", 1, 2) + _c("S2", 1, 2, 4),
    ),
    Rule(
        id="SURG-NO-FUSION",
        title="No fusion for a routine disc herniation",
        text=(
            "Lumbar fusion for an ordinary disc herniation adds complexity and complications "
            "with no shown necessity. It is refused unless overridden with a documented reason, "
            "or unless the fusion_indication is one of: chronic axial back pain, manual "
            "labourer, severe degeneration, documented instability."
        ),
        strength=_S.REFUSE_WITH_OVERRIDE,
        citations=_c("S0", 1) + _c("S1", 2, 4) + _c("S2", 2),
    ),
    Rule(
        id="MED-OPIOID",
        title="Opioids: not first-line, short-term only",
        text=(
            "Opioids are not a first-line medicine here and show no benefit over the long term; "
            "for severe pain they may be used briefly, at the smallest effective dose and with "
            "close monitoring. A first-line opioid, or a course beyond the short-term limit, is "
            "accepted with a warning, and a review falls due at the limit."
        ),
        strength=_S.WARN,
        citations=_c("S0", 1, 2) + _c("S1", 2) + _c("S4", 1),
        default=(
            "Our default: 14 days (the sources say only 'shortest duration'); configurable as "
            "opioid_limit_days."
        ),
    ),
    Rule(
        id="MED-NEURO",
        title="Gabapentin and pregabalin",
        text=(
            "Gabapentin or pregabalin may be used for neuropathic radicular pain, but the "
            "sources disagree on their place; whenever one is ordered the engine shows each "
            "view with its citation."
        ),
        strength=_S.ADVISORY,
        citations=_c("S0", 1, 3) + _c("S1", 2) + _c("S2", 2) + _c("S4", 1),
        conflict=(
            "S2 starts gabapentin or pregabalin to treat bilateral radicular symptoms; S4 keeps "
            "them as a second-line option when the pain has a neuropathic component; S0 and S1 "
            "report negative trials in lumbosacral radiculopathy for pregabalin, and also for "
            "nortriptyline, morphine and topiramate."
        ),
    ),
    Rule(
        id="MED-STEROID",
        title="Short course of oral corticosteroids",
        text=(
            "A brief course of oral corticosteroids may be considered if nothing "
            "contraindicates it."
        ),
        strength=_S.ADVISORY,
        citations=_c("S2", 2),
    ),
    Rule(
        id="IMG-FIRST",
        title="MRI as the first imaging modality",
        text=(
            "When imaging is indicated, MRI without contrast is the preferred first test (S2, "
            "S4), as it shows soft tissue, disc disease and nerve compression well. Whether "
            "imaging is indicated at all still follows IMG-NO-EARLY (S0, S1, S2)."
        ),
        strength=_S.ADVISORY,
        citations=_c("S0", 1) + _c("S1", 1, 2) + _c("S2", 1) + _c("S4", 1),
    ),
    Rule(
        id="NCS-CHRONIC",
        title="Chronic reinnervation without acute denervation on EMG/NCS",
        text=(
            "EMG/NCS showing chronic reinnervation but no acute denervation points to an old "
            "nerve injury that has stabilised, which is broadly a good sign. It supports "
            "conservative care and is not a red flag; the study is repeated only if the patient "
            "deteriorates or new symptoms suggest a fresh nerve injury."
        ),
        strength=_S.ADVISORY,
        citations=_c("S2", 1, 5),
    ),
    # ---- Follow-up and assessment -------------------------------------------------------
    Rule(
        id="FU-FIRST",
        title="First follow-up at 2 to 4 weeks",
        text=(
            "The first follow-up falls 2 to 4 weeks after conservative treatment begins: its "
            "window opens 14 days after presentation and the visit is due at 28 days."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 2),
        default=(
            "Our default: the first assessment on a day after the enrolment day completes the "
            "first follow-up; for FU-ELDERLY (elderly_age) and PRED-WORKCOMP it is due when the "
            "window opens "
            "(14 days). A window already past at enrolment comes up at once, due by the end "
            "of that day, once."
        ),
    ),
    Rule(
        id="FU-ACTIVE",
        title="Periodic reviews in the first 12 weeks",
        text=(
            "During the first 12 weeks, a periodic review falls due one interval after the "
            "latest assessment (or after presentation if there is none yet): every 4 weeks, or "
            "every 2 weeks for elderly patients (FU-ELDERLY) and those with a workers' "
            "compensation claim (PRED-WORKCOMP). Only one periodic review is open at a time."
        ),
        strength=_S.TRIGGER,
        citations=_c("S2", 2, 4) + _c("S3", 1, 2),
        default=(
            "Our default: 4 weeks, and 2 weeks for FU-ELDERLY and PRED-WORKCOMP (the sources "
            "give a range of 2-4 weeks); configurable as periodic_review_weeks and "
            "intensive_review_weeks. The first follow-up (FU-FIRST) stands in for the first "
            "periodic review, so periodic reviews start from the assessment that completes it."
        ),
    ),
    Rule(
        id="FU-3M",
        title="Reviews every 3 months after 12 weeks",
        text=(
            "After 12 weeks, while symptoms continue, a review falls due every 3 months, or "
            "every 6 weeks for elderly patients and those with a workers' compensation claim."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 6),
        default=(
            "The 3-month interval comes from S3; the 6 weeks for FU-ELDERLY and PRED-WORKCOMP "
            "is our default (the sources give no figure). Configurable as chronic_review_months "
            "and intensive_chronic_review_weeks."
        ),
    ),
    Rule(
        id="FU-ELDERLY",
        title="Elderly patients",
        text=(
            "Older patients are more prone to medication side effects, poor balance and falls: "
            "see them more often, watch for side effects and falls, and raise exercise "
            "intensity more slowly."
        ),
        strength=_S.TRIGGER,
        citations=_c("S4", 1),
        default=(
            "Our default: elderly means aged 65 or over (the sources give no age); configurable "
            "as elderly_age. The shorter intervals are intensive_review_weeks (first 12 weeks) "
            "and intensive_chronic_review_weeks (after 12 weeks)."
        ),
    ),
    Rule(
        id="FU-CONTENT",
        title="What every visit records",
        text=(
            "Every visit records: leg-pain VAS (0-10); whether the pain follows one dermatome "
            "or several (several suggests plexopathy); neuropathic character and spread below "
            "the knee; motor power on each side, MRC 0-5, for knee extension (L3), ankle "
            "dorsiflexion (L4), great-toe extension (L5) and ankle plantarflexion (S1); knee "
            "(L3-L4) and ankle (S1) reflexes; sensation; the straight-leg raise; a cauda equina "
            "screen; the Oswestry Disability Index (0-100); work status; and walking tolerance "
            "with any neurogenic claudication."
        ),
        strength=_S.ADVISORY,
        citations=_c("S2", 2, 4, 5, 7) + _c("S3", 1, 2, 3, 4, 5, 6, 7, 8),
    ),
    Rule(
        id="FU-RESPONSE",
        title="Response to treatment",
        text=(
            "Compared with baseline, the patient is improving when leg-pain VAS falls by 30% or "
            "more or by 2 points, or when the ODI falls by 10 points or more; worsening when "
            "VAS rises by 2 points or more or a new deficit appears."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 3),
        default=(
            "These thresholds are entirely ours, taken from common conventions for the minimal "
            "clinically important difference; the sources give none (S3 is cited only for the "
            "measures, VAS and ODI). Configurable as improve_vas_fraction, improve_vas_points, "
            "improve_odi_points and worsen_vas_points."
        ),
    ),
    # ---- Risk markers -------------------------------------------------------------------
    Rule(
        id="PRED-PRIOR-LBP",
        title="Prior low back pain",
        text=(
            "Earlier episodes of low back pain predict later surgery (adjusted OR 4.79). Shown "
            "on the episode."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 3),
    ),
    Rule(
        id="PRED-SLR",
        title="Positive straight-leg raise",
        text=(
            "A positive straight-leg raise predicts that surgery will later be needed (adjusted "
            "OR 4.38). Shown on the episode."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 3),
    ),
    Rule(
        id="PRED-FEMALE",
        title="Female sex",
        text=(
            "Female sex predicts lasting disability (adjusted OR 3.16) and not recovering "
            "(adjusted OR 2.44). Shown on the episode."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 3),
    ),
    Rule(
        id="PRED-WORKCOMP",
        title="Workers' compensation claim",
        text=(
            "A workers' compensation claim strongly predicts persisting leg pain (adjusted OR "
            "9.04) and lasting disability (5.99); it triggers closer monitoring with shorter "
            "review intervals (FU-ACTIVE, FU-3M)."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 3),
    ),
    Rule(
        id="PRED-HIGH-VAS",
        title="High baseline leg pain",
        text=(
            "High leg pain at baseline that persists predicts that treatment will fail and that "
            "surgery may be needed. Shown on the episode."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 3),
        default=(
            "Our default: 'high' means a leg-pain VAS of 7 or more (the sources give no "
            "cut-off); configurable as high_vas."
        ),
    ),
    # ---- Special populations and differentials ------------------------------------------
    Rule(
        id="SP-CTD",
        title="Connective tissue disorder",
        text=(
            "Patients with a connective tissue disorder need physiotherapy that is gentler and "
            "progresses more gradually."
        ),
        strength=_S.TRIGGER,
        citations=_c("S4", 1),
    ),
    Rule(
        id="SP-PELVIC",
        title="Pelvic floor dysfunction",
        text="With pelvic floor dysfunction, consider physiotherapy aimed at the pelvic floor.",
        strength=_S.TRIGGER,
        citations=_c("S4", 1),
    ),
    Rule(
        id="SP-BILATERAL",
        title="Bilateral symptoms not improving: image higher levels",
        text=(
            "Bilateral symptoms put down to L5/S1 can come from stenosis higher up (for example "
            "L3-L4). If they do not improve with proper conservative care, make sure the "
            "imaging covers the levels above L5/S1. Pain in both legs without weakness is not "
            "a red flag."
        ),
        strength=_S.TRIGGER,
        citations=_c("S2", 1, 6),
    ),
    Rule(
        id="SP-STENOSIS",
        title="Neurogenic claudication: consider stenosis",
        text=(
            "Symptoms brought on by walking or standing and eased by sitting (neurogenic "
            "claudication) suggest lumbar spinal stenosis rather than radiculopathy; assess "
            "walking tolerance to tell them apart."
        ),
        strength=_S.TRIGGER,
        citations=_c("S3", 4),
    ),
)


def _index(rules: tuple[Rule, ...]) -> Mapping[str, Rule]:
    """Key the rules by ID, refusing duplicates and rules without a citation.

    Args:
        rules: the rules in PATHWAY.md order.

    Returns:
        A read-only mapping from rule ID to rule, in the given order.

    Raises:
        ValueError: if an ID repeats or a rule has no citation.
    """
    index: dict[str, Rule] = {}
    for r in rules:
        if r.id in index:
            raise ValueError(f"duplicate rule id {r.id!r}")
        if not r.citations:
            raise ValueError(f"rule {r.id!r} has no citation")
        index[r.id] = r
    return MappingProxyType(index)


RULES: Mapping[str, Rule] = _index(_RULE_LIST)
"""Every rule in PATHWAY.md, keyed by ID, in the order the specification presents them."""


RECOMMENDED_CARE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "PH-ACUTE": (
            "Explain the condition and its usually good outlook",
            "Keep moving; no bed rest",
            "Directional-preference exercises",
            "Positions held to ease the pain",
            "Heat or cold as needed",
            "Adjust activities rather than stop them",
            "NSAID first, acetaminophen as the alternative",
            "Muscle relaxant when there is spasm",
            "Opioid only briefly, for severe pain (MED-OPIOID)",
        ),
        "PH-SUBACUTE": (
            "Neurodynamic (nerve-gliding) mobilisation with strengthening",
            "Motor-control exercise under supervision",
            "Core-stability exercise",
        ),
        "PH-CHRONIC": (
            "Spinal manipulation",
            "Aerobic conditioning and targeted strengthening",
            "Training for the tasks the patient needs to perform",
            "Individual advice on work, ergonomics and posture",
            "Multidisciplinary rehabilitation with CBT if refractory",
        ),
        "SP-CTD": ("Gentler physiotherapy with slower progression",),
        "SP-PELVIC": ("Pelvic floor physiotherapy",),
        "SP-BILATERAL": ("Imaging that also covers the levels above L5/S1",),
        "SP-PLEXUS": (
            "Consider lumbosacral plexopathy",
            "MRI of the lumbosacral plexus",
            "After trauma, wait about a month before plexus imaging",
        ),
        "SP-STENOSIS": (
            "Consider lumbar spinal stenosis",
            "Record walking tolerance and claudication",
        ),
        "FU-ELDERLY": (
            "Shorter follow-up intervals",
            "Watch for medication side effects",
            "Assess balance and fall risk",
            "Progress exercise intensity slowly",
        ),
    }
)
"""Care-plan activities, as short phrases in our own words, for phase and population rules."""


def rule(rule_id: str) -> Rule:
    """Look up one rule by its ID.

    Args:
        rule_id: a rule ID from PATHWAY.md, e.g. ``"ESI-GUIDED"``.

    Returns:
        The rule.

    Raises:
        KeyError: if no rule has that ID; the message names the ID.
    """
    try:
        return RULES[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule id {rule_id!r}: not a rule in PATHWAY.md") from None


def cite(rule_id: str) -> list[str]:
    """Render a rule's citations for people.

    Args:
        rule_id: a rule ID from PATHWAY.md.

    Returns:
        One string per citation, e.g. ``"S2 (002_6b2d115242e3efa1.txt): Medical Necessity of
        Lumbar Fusion, Praxis Medical Insights, 2025 [ref 2]"``.

    Raises:
        KeyError: if no rule has that ID.
    """
    return [str(c) for c in rule(rule_id).citations]
