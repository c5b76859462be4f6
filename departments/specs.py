"""The simulated departments' datasets: every spec, in one tuple.

Apart from the generator (:mod:`departments.simulate`) so that the APIs' server, which needs
the API datasets' cursors and keys and nothing else of it, does not import the generator's
writers (polars, openpyxl): that was ~0.17 s of the server's ~0.6 s start, which a run waits
for when a pull is due.
"""

from __future__ import annotations

from departments.outcomes import OUTCOME_SPECS
from departments.people import PERSON_SPECS
from departments.places import PLACE_SPECS
from departments.services import SERVICE_SPECS
from departments.spec import Spec

SPECS: tuple[Spec, ...] = PERSON_SPECS + PLACE_SPECS + SERVICE_SPECS + OUTCOME_SPECS
