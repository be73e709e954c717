//! The CapabilityStatement at `/metadata`, derived from the same tables the store runs on,
//! so it lists exactly what is supported.

use serde_json::{Value, json};

use crate::fhir::resource_type::ALL;
use crate::search_params::params_for;

const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// Build the CapabilityStatement for a store served at `base_url`.
pub fn capability_statement(base_url: &str) -> Value {
    let resources: Vec<Value> = ALL
        .iter()
        .map(|rt| {
            let name = rt.as_str();
            let mut params = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            params.extend(
                params_for(name)
                    .iter()
                    .map(|p| json!({"name": p.code, "type": p.kind.as_str()})),
            );
            let mut r = json!({
                "type": name,
                "interaction": TYPE_INTERACTIONS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "conditionalRead": "modified-since",
                "searchParam": params,
            });
            let includes: Vec<String> = params_for(name)
                .iter()
                .filter(|p| p.kind == crate::search_params::ParamKind::Reference)
                .map(|p| format!("{name}:{}", p.code))
                .collect();
            if !includes.is_empty() {
                r["searchInclude"] = json!(includes);
                r["searchRevInclude"] = json!(includes);
            }
            if name == "Patient" {
                r["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                }]);
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "software": {"name": "fhirgate-store", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "fhirgate embedded FHIR store", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"}
            ],
            "searchParam": [
                {"name": "_count", "type": "number"},
                {"name": "_sort", "type": "string"},
                {"name": "_include", "type": "string"},
                {"name": "_revinclude", "type": "string"},
                {"name": "_summary", "type": "token"},
                {"name": "_total", "type": "token"},
                {"name": "_elements", "type": "string"}
            ]
        }]
    })
}
