//! Reference extraction from raw FHIR JSON, without a full FHIR model. (In progress.)
