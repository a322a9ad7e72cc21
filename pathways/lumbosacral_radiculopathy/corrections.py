"""The corrections the pathway's code knows, by ID.

A pathway version lists the corrections it includes (``[[corrections]]`` in its definition);
code whose behaviour a correction changes asks the episode's definition
(``pathway.corrects("EP-FINAL")``) and keeps the earlier behaviour otherwise, so an episode
runs to its end as the version it was opened on says. An ID here is what the loader accepts
in a definition, and what :meth:`engine.definition.Definition.corrects` accepts from code.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

CORRECTIONS: Mapping[str, str] = MappingProxyType(
    {
        "EP-FINAL": "an event on a resolved or closed episode is a refusal, not invalid input",
        "ESI-TF-LEVEL": "the transforaminal suggestion only for a level below L3",
        "IMG-3M-MRI-ON-FILE": "no imaging indication at 3 months once an MRI result is on "
        "file, unless the episode is worsening",
        "REHAB-MDT-RELIEF": "rehabilitation shown after an intervention only while it gives "
        "relief; without relief, the next step",
        "MED-STEROID-WARN": "oral corticosteroids with a documented contraindication warn",
        "SURG-ELECTIVE": "elective discectomy or fusion needs failed conservative care, a "
        "biopsychosocial assessment and correlating imaging",
        "PRF-DRG-GUARD": "pulsed radiofrequency only in the chronic phase after failed "
        "conservative care and an injection; the advisory shown when that is so",
        "SCS-POSTOP-GUARD": "spinal cord stimulation only after spinal surgery; the "
        "advisory shown when leg pain does not improve after it",
        "IMG-PLEXUS-TRAUMA": "plexus MRI waits about a month after a recorded trauma",
        "SURG-6W-POSIMG-SHOWN": "a surgical evaluation recommended after the conservative "
        "window with correlating positive imaging and failed care",
        "FU-RESPONSE-NO-BASELINE": "a first visit past the conservative window with leg pain "
        "at or above a threshold counts as persisting",
        "RF-MARKERS-SERIOUS": "cancer history with a sign of malignancy, or fever with "
        "immunosuppression, raises RF-SERIOUS",
        "SP-PLEXUS-ADJACENT": "plexopathy suggested by pain over adjacent dermatomes on one "
        "side, not by any two",
        "FU-ACTIVE-12W": "a visit before 12 weeks books its periodic review one interval "
        "later, even past 12 weeks",
        "RF-CARE": "care recorded under a red flag is applied to its tracks; emergency "
        "referrals skip elective criteria; a flag from findings ends after its treatment",
        "ORDER-NAMES": "orders named in words in refusals (X-ray, plexus MRI), not codes",
        "NONOVERRIDABLE-FIRST": "a refusal no override lifts is reported whatever override "
        "reason is sent; the reason is checked only where it could count",
        "EVENTS-AT-OCCURRED": "a visit completes a review only if the review's window had "
        "opened when the visit happened, however late it is documented",
    }
)
