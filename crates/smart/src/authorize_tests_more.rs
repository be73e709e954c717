//! More decision rows: granular scopes, writes, operations, user/ and system/ scopes.

use super::*;

#[test]
fn granular_scopes() {
    const CAT: &str =
        "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    check(&[
        // F21: restriction added when absent, kept when carried, refused when contradicted.
        (LAB, P1, "GET", "/Observation?patient=p1", W(&[CAT])),
        (LAB, P1, "GET", "/Observation", W(&["patient=p1", CAT])),
        (
            LAB,
            P1,
            "GET",
            "/Observation?patient=p1&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            NONE,
        ),
        (
            LAB,
            P1,
            "GET",
            "/Observation?patient=p1&category=vital-signs",
            SCOPE,
        ),
        (
            LAB,
            P1,
            "GET",
            "/Observation?patient=p1&category=laboratory",
            W(&[CAT]),
        ),
        (
            LAB,
            P1,
            "GET",
            "/Observation?patient=p1&category=laboratory,vital-signs",
            W(&[CAT]),
        ),
        (
            LAB,
            P1,
            "GET",
            "/Observation?patient=p1&category:not=laboratory",
            W(&[CAT]),
        ),
        // Two restrictions on the same parameter become one OR list.
        (
            LABV,
            P1,
            "GET",
            "/Observation?patient=p1",
            W(&["category=laboratory,vital-signs"]),
        ),
        (
            LABV,
            P1,
            "GET",
            "/Observation?patient=p1&category=vital-signs",
            NONE,
        ),
        (
            LABV,
            P1,
            "GET",
            "/Observation?patient=p1&category=social-history",
            SCOPE,
        ),
        // An unrestricted scope for the same type wins (scopes union).
        (
            "patient/Observation.rs patient/Observation.rs?category=laboratory",
            P1,
            "GET",
            "/Observation?patient=p1",
            NONE,
        ),
        (
            "patient/Observation.rs?category=laboratory",
            P1,
            "GET",
            "/Condition?patient=p1",
            SCOPE,
        ),
        // Restrictions on different parameters cannot be OR-ed into one query.
        (
            "patient/Observation.rs?category=laboratory patient/Observation.rs?code=1234-5",
            P1,
            "GET",
            "/Observation?patient=p1",
            SCOPE,
        ),
        (
            "patient/Observation.rs?category=laboratory patient/Observation.rs?code=1234-5",
            P1,
            "GET",
            "/Observation?patient=p1&code=1234-5",
            NONE,
        ),
        // Unenforceable restrictions grant nothing.
        (
            "patient/Observation.rs?code:in=http://vs",
            P1,
            "GET",
            "/Observation?patient=p1",
            SCOPE,
        ),
        (
            "patient/Observation.rs?patient.name=x",
            P1,
            "GET",
            "/Observation/o1",
            SCOPE,
        ),
        // user/ granular: no patient, restriction still applies.
        (
            "user/Observation.rs?category=laboratory",
            None,
            "GET",
            "/Observation",
            W(&["category=laboratory"]),
        ),
        (
            "user/Observation.rs?category=laboratory",
            None,
            "GET",
            "/Observation?category=vital-signs",
            SCOPE,
        ),
        (
            "user/Observation.rs?category=laboratory",
            None,
            "GET",
            "/Observation/o1",
            NONE,
        ),
        ("user/Observation.rs", None, "GET", "/Observation/o1", A),
    ]);
}

#[test]
fn writes_under_patient_scopes() {
    check(&[
        // F18: create must land in the compartment (checked on the body).
        (PW, P1, "POST", "/Observation", NONE),
        (T1, P1, "POST", "/Observation", SCOPE),
        ("patient/Observation.c", P1, "POST", "/Observation", NONE),
        ("patient/Observation.c", P1, "POST", "/Condition", SCOPE),
        ("patient/*.write", P1, "POST", "/Observation", NONE),
        ("patient/*.read", P1, "POST", "/Observation", SCOPE),
        (PW, P1, "POST", "/Patient", FORBID),
        (PW, P1, "POST", "/Practitioner", FORBID),
        ("user/*.cruds", None, "POST", "/Practitioner", A),
        ("user/*.rs", None, "POST", "/Practitioner", SCOPE),
        // F20: conditional create criteria get the patient.
        (
            PW,
            P1,
            "POST",
            "/Observation INE identifier=x",
            W(&["If-None-Exist: identifier=x&patient=p1"]),
        ),
        (
            PW,
            P1,
            "POST",
            "/Observation INE identifier=x&patient=p2",
            OTHER,
        ),
        (
            PW,
            P1,
            "POST",
            "/Observation INE patient=p1&identifier=x",
            NONE,
        ),
        (PW, P1, "POST", "/Observation INE subject.name=x", NS),
        // F19: update/patch by id: current resource fetched and the body checked.
        (PW, P1, "PUT", "/Observation/o1", NONE),
        (
            "patient/Observation.rs",
            P1,
            "PUT",
            "/Observation/o1",
            SCOPE,
        ),
        (PW, P1, "PATCH", "/Observation/o1", NONE),
        (
            "patient/Observation.cd",
            P1,
            "PATCH",
            "/Observation/o1",
            SCOPE,
        ),
        (PW, P1, "PUT", "/Patient/p1", NONE),
        (PW, P1, "PUT", "/Patient/p2", OTHER),
        (PW, P1, "PUT", "/Organization/org1", FORBID),
        ("user/*.cruds", None, "PUT", "/Organization/org1", A),
        // Delete by id: current resource checked; Patient never.
        (PW, P1, "DELETE", "/Observation/o1", NONE),
        (
            "patient/Observation.cru",
            P1,
            "DELETE",
            "/Observation/o1",
            SCOPE,
        ),
        (PW, P1, "DELETE", "/Patient/p1", FORBID),
        ("user/*.cruds", None, "DELETE", "/Patient/p1", A),
        // F20: conditional update/patch/delete get the patient constraint.
        (
            PW,
            P1,
            "PUT",
            "/Observation?identifier=x",
            W(&["patient=p1"]),
        ),
        (PW, P1, "PUT", "/Observation?identifier=x&patient=p2", OTHER),
        (
            PW,
            P1,
            "PATCH",
            "/Observation?identifier=x",
            W(&["patient=p1"]),
        ),
        (PW, P1, "PATCH", "/Observation?_has:Observation:x:y=1", NS),
        (PW, P1, "DELETE", "/Observation?code=x", W(&["patient=p1"])),
        (
            PW,
            P1,
            "DELETE",
            "/Observation?code=x&subject=Patient/p2",
            OTHER,
        ),
        (PW, P1, "DELETE", "/Patient?name=x", FORBID),
        (PW, P1, "PUT", "/Patient?identifier=x", W(&["_id=p1"])),
        // Injection switch off does not free conditional writes.
        (PW, P1, "DELETE", "/Observation?patient=p1&code=x", NONE),
        // Granular writes: the restriction is added to conditional criteria.
        (
            "patient/Observation.cud?category=laboratory",
            P1,
            "DELETE",
            "/Observation?code=x",
            W(&["patient=p1", "category=laboratory"]),
        ),
        (
            "patient/Observation.cud?category=laboratory",
            P1,
            "DELETE",
            "/Observation?code=x&category=vital-signs",
            SCOPE,
        ),
    ]);
}

#[test]
fn operations_table() {
    check(&[
        // $export only with system/ or user/.
        (T1, P1, "GET", "/$export", FORBID),
        (SYS, None, "GET", "/$export", A),
        (T1, P1, "GET", "/Patient/$export", FORBID),
        (SYS, None, "GET", "/Patient/$export", A),
        (T1, P1, "GET", "/Group/g1/$export", FORBID),
        (USER, None, "GET", "/Group/g1/$export", A),
        (
            "system/Observation.rs",
            None,
            "GET",
            "/$export?_type=Observation",
            A,
        ),
        (
            "system/Observation.rs",
            None,
            "GET",
            "/$export?_type=Observation,Condition",
            SCOPE,
        ),
        (
            "system/Observation.rs?category=laboratory",
            None,
            "GET",
            "/$export?_type=Observation",
            SCOPE,
        ),
        // $lastn is a search.
        (
            T1,
            P1,
            "GET",
            "/Observation/$lastn?code=x",
            W(&["patient=p1"]),
        ),
        (T1, P1, "GET", "/Observation/$lastn?patient=p2", OTHER),
        (
            "patient/Condition.rs",
            P1,
            "GET",
            "/Observation/$lastn",
            SCOPE,
        ),
        // $stats: confined through subject; not with granular scopes.
        (
            T1,
            P1,
            "GET",
            "/Observation/$stats?code=x",
            W(&["subject=Patient/p1"]),
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation/$stats?subject=Patient/p2",
            OTHER,
        ),
        (
            LAB,
            P1,
            "GET",
            "/Observation/$stats?subject=Patient/p1",
            SCOPE,
        ),
        // $validate: proposing a write.
        (PW, P1, "POST", "/Observation/$validate", A),
        (T1, P1, "POST", "/Observation/$validate", SCOPE),
        (T1, P1, "GET", "/Patient/p1/$validate", A),
        (T1, P1, "GET", "/Patient/p2/$validate", OTHER),
        (T1, P1, "GET", "/Observation/o1/$validate", FORBID),
        (USER, None, "GET", "/Observation/o1/$validate", A),
        // $meta.
        (T1, P1, "GET", "/$meta", FORBID),
        (USER, None, "GET", "/$meta", A),
        (T1, P1, "GET", "/Patient/p1/$meta", A),
        (T1, P1, "GET", "/Observation/o1/$meta", FORBID),
        (PW, P1, "POST", "/Observation/o1/$meta-add", FORBID),
        ("user/*.cruds", None, "POST", "/Observation/o1/$meta-add", A),
        // Terminology needs read on the terminology type only.
        (T1, P1, "GET", "/ValueSet/$expand?url=http://x", A),
        (OBS, P1, "GET", "/ValueSet/$expand?url=http://x", SCOPE),
        (
            "patient/CodeSystem.rs",
            P1,
            "GET",
            "/CodeSystem/$lookup?code=x",
            A,
        ),
        (
            "patient/CodeSystem.rs",
            P1,
            "GET",
            "/ValueSet/vs1/$validate-code?code=x",
            SCOPE,
        ),
        (USER, None, "GET", "/ConceptMap/$translate?code=x", A),
        // $document: a read whose Bundle is verified.
        (T1, P1, "GET", "/Composition/c1/$document", NONE),
        (
            "patient/Condition.rs",
            P1,
            "GET",
            "/Composition/c1/$document",
            SCOPE,
        ),
        // $graphql (F12).
        (T1, P1, "GET", "/$graphql?query=x", NS),
        (T1, P1, "GET", "/Patient/p1/$graphql?query=x", NS),
        (USER, None, "GET", "/$graphql?query=x", A),
        (
            "user/Observation.rs",
            None,
            "GET",
            "/$graphql?query=x",
            SCOPE,
        ),
        // $match, $versions.
        (T1, P1, "POST", "/Patient/$match", FORBID),
        (USER, None, "POST", "/Patient/$match", A),
        ("", None, "GET", "/$versions", A),
        // Unknown operations.
        (PW, P1, "POST", "/Observation/$frobnicate", FORBID),
        ("user/*.cruds", None, "POST", "/Observation/$frobnicate", A),
        (USER, None, "POST", "/Observation/$frobnicate", SCOPE),
        (
            "user/Observation.cruds",
            None,
            "POST",
            "/$frobnicate",
            SCOPE,
        ),
    ]);
}

#[test]
fn user_and_system_scopes_have_no_compartment() {
    check(&[
        // F23.
        (USER, None, "GET", "/Patient/p2", A),
        (USER, None, "GET", "/Observation?patient=p2", A),
        (USER, None, "GET", "/Observation?code=x", A),
        (
            USER,
            None,
            "GET",
            "/Observation?_include=Observation:subject",
            NONE,
        ),
        (SYS, None, "GET", "/Observation?patient=p2", A),
        (
            "system/Observation.rs",
            None,
            "GET",
            "/Condition?patient=p2",
            SCOPE,
        ),
        ("user/Observation.read", None, "GET", "/Observation/o9", A),
        (
            "user/Observation.read",
            None,
            "DELETE",
            "/Observation/o9",
            SCOPE,
        ),
        ("user/Observation.cud", None, "DELETE", "/Observation/o9", A),
        ("system/*.cruds", None, "PATCH", "/Observation?code=x", A),
        ("system/*.rs", None, "PATCH", "/Observation?code=x", SCOPE),
        // A token with a patient context but only user/ scopes is not confined.
        (USER, P1, "GET", "/Patient/p2", A),
        // A restricted user/ scope does not shadow an unrestricted patient/ one.
        (
            "user/Observation.rs?category=laboratory patient/Observation.rs",
            P1,
            "GET",
            "/Observation?code=x",
            W(&["patient=p1"]),
        ),
        (
            "user/Observation.rs?category=laboratory patient/Observation.rs",
            None,
            "GET",
            "/Observation?code=x",
            W(&["category=laboratory"]),
        ),
        // Mixed: the user/ scope carries Practitioner, the patient/ scope Observation.
        (
            "user/Practitioner.rs patient/Observation.rs",
            P1,
            "GET",
            "/Practitioner/d1",
            A,
        ),
        (
            "user/Practitioner.rs patient/Observation.rs",
            P1,
            "GET",
            "/Observation?code=x",
            W(&["patient=p1"]),
        ),
        (
            "user/Practitioner.rs patient/Observation.rs",
            P1,
            "GET",
            "/Condition?code=x",
            SCOPE,
        ),
    ]);
}
