"""The bundle builder holds exactly the Synthea records whose care date falls in the range (expected set
computed from the Synthea JSON files, never from the server), on both backends."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fhirclient.models.bundle import Bundle

from bundles import builder
from fhir_server.access.context import AccessContext
from tests.support import synthea as sy
from tests.support.synthea import expected

RANGES = [("1990-01-01", "1994-12-31"), ("2010-01-01", "2014-12-31"), ("2016-03-01", "2019-06-30"),
          ("1900-01-01", "2100-12-31")]

def patient_id(app: Any, p: sy.PatientBundle) -> str:
    _, page = app.extensions["fhir_service"].search(AccessContext.system("t"), "Patient",
                                                    [("identifier", f"{sy.SYNTHEA_ID}|{p.identifier}")])
    return str(page.matches[0][1])


@pytest.mark.parametrize("start,end", RANGES)
def test_every_synthea_patient_gets_exactly_the_records_in_range(synthea_app: Any, start: str, end: str) -> None:
    svc = synthea_app.extensions["fhir_service"]
    for p in sy.patients():
        pid = patient_id(synthea_app, p)
        ctx = AccessContext.from_scopes(["patient/*.cruds"], patient_id=pid, user=f"Patient/{pid}")
        built = builder.build(svc, ctx, pid, start, end)
        Bundle(built.bundle, strict=True)
        got = [e["resource"] for e in built.bundle["entry"]]
        assert got[0]["resourceType"] == "Patient" and got[0]["id"] == pid
        want = expected(p, start, end)
        assert Counter(sy.server_fingerprint(r) for r in got) == sy.bundle_fingerprints(p, want), (p.name, start, end)
        assert builder.preview(svc, ctx, pid, start, end) == built.counts


def test_other_patients_records_are_never_included(synthea_app: Any) -> None:
    svc = synthea_app.extensions["fhir_service"]
    a, b = sy.patients()[0], sy.patients()[1]
    pid_a, pid_b = patient_id(synthea_app, a), patient_id(synthea_app, b)
    ctx = AccessContext.from_scopes(["patient/*.cruds"], patient_id=pid_a, user=f"Patient/{pid_a}")
    from fhir_server.errors import FhirError
    with pytest.raises(FhirError):
        builder.build(svc, ctx, pid_b)
    refs = {f"Patient/{pid_b}"}
    for e in builder.build(svc, ctx, pid_a).bundle["entry"]:
        assert not refs & set(sy._references(e["resource"]))
