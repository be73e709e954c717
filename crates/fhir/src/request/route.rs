//! Path and query checks and the FHIR REST routing table, used by [`super::classify`].
//! Kept apart from the request types so each file reads in one sitting.

use super::{
    COMPARTMENT_TYPES, ClassifyError, IF_NONE_EXIST, Interaction, MAX_PATH_LEN, OperationLevel,
    Verb, not_allowed, truncate,
};
use crate::resource_type::{ResourceType, is_valid_id};
use crate::search::SearchParams;

/// Byte-level checks on the raw path, before it is split. Every `%` is refused: no segment
/// of a FHIR REST path needs one, and accepting any escape would mean either forwarding a
/// path that differs from the one authorized or decoding it (the `%2F`/`%2E`/`%252F` bugs).
pub(super) fn check_path(path: &str) -> Result<(), ClassifyError> {
    if path.len() > MAX_PATH_LEN {
        return Err(ClassifyError::InvalidPath(format!(
            "path longer than {MAX_PATH_LEN} bytes"
        )));
    }
    if !path.starts_with('/') {
        return Err(ClassifyError::InvalidPath(
            "path must start with '/'".to_owned(),
        ));
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' => return Err(encoded_path_error(bytes.get(i + 1..i + 3))),
            b';' => {
                return Err(ClassifyError::InvalidPath(
                    "';' (matrix parameters) is not allowed in the path".to_owned(),
                ));
            }
            b'\\' => {
                return Err(ClassifyError::InvalidPath(
                    "backslash is not allowed in the path".to_owned(),
                ));
            }
            b'#' => {
                return Err(ClassifyError::InvalidPath(
                    "fragment ('#') is not allowed in the request".to_owned(),
                ));
            }
            b'?' => {
                return Err(ClassifyError::InvalidPath(
                    "query must not be part of the path".to_owned(),
                ));
            }
            0..=0x1f | 0x7f => {
                return Err(ClassifyError::InvalidPath(
                    "control character in the path".to_owned(),
                ));
            }
            b if b.is_ascii_alphanumeric() => {}
            b'/' | b'-' | b'.' | b'_' | b'$' | b'*' => {}
            _ => {
                return Err(ClassifyError::InvalidPath(format!(
                    "character '{}' is not allowed in a FHIR path",
                    char::from(b).escape_default()
                )));
            }
        }
    }
    Ok(())
}

/// A specific message for the escapes used in known path-confusion attacks.
fn encoded_path_error(escape: Option<&[u8]>) -> ClassifyError {
    let what = match escape.map(|e| e.to_ascii_uppercase()).as_deref() {
        Some(b"2F") => "encoded slash ('%2F')",
        Some(b"5C") => "encoded backslash ('%5C')",
        Some(b"2E") => "encoded dot ('%2E')",
        Some(b"3B") => "encoded ';' ('%3B')",
        Some(b"00") => "encoded NUL ('%00')",
        Some(b"25") => "double encoding ('%25')",
        Some(b"23") => "encoded fragment ('%23')",
        Some(b"3F") => "encoded '?' ('%3F')",
        _ => "percent-encoding",
    };
    ClassifyError::InvalidPath(format!("{what} is not allowed in the path"))
}

/// The raw query is forwarded as parsed pieces; a `#`, `;` or control byte would be cut or
/// split differently by the upstream, so it is refused here.
pub(super) fn check_raw_query(q: &str) -> Result<(), ClassifyError> {
    for b in q.bytes() {
        match b {
            b'#' => {
                return Err(ClassifyError::InvalidQuery(
                    "fragment ('#') is not allowed in the request".to_owned(),
                ));
            }
            // Some stacks (old CGI conventions, Python before CVE-2021-23336) split the query
            // at `;` as well as `&`: `code=x;patient=P2` would be one parameter here and two
            // upstream. An encoded `%3B` means the same to everyone and stays allowed.
            b';' => {
                return Err(ClassifyError::InvalidQuery(
                    "raw ';' in the query; encode it as %3B".to_owned(),
                ));
            }
            0..=0x20 | 0x7f => {
                return Err(ClassifyError::InvalidQuery(
                    "control character or space in the query".to_owned(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Split `/a/b/c` into segments; `/` alone is no segment. Empty segments (`//`, a trailing
/// `/`) and dot segments are errors, never collapsed.
pub(super) fn split_segments(path: &str) -> Result<Vec<&str>, ClassifyError> {
    let rest = path.get(1..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut segments = Vec::new();
    for seg in rest.split('/') {
        match seg {
            "" => {
                return Err(ClassifyError::InvalidPath(
                    "empty path segment (doubled or trailing slash)".to_owned(),
                ));
            }
            "." | ".." => {
                return Err(ClassifyError::InvalidPath(
                    "dot segment ('.' or '..') in the path".to_owned(),
                ));
            }
            _ => {}
        }
        if segments.len() == 4 {
            return Err(ClassifyError::InvalidPath(
                "too many path segments for a FHIR REST request".to_owned(),
            ));
        }
        segments.push(seg);
    }
    Ok(segments)
}

fn resource_type(seg: &str) -> Result<ResourceType, ClassifyError> {
    ResourceType::from_name(seg).ok_or_else(|| ClassifyError::UnknownResourceType(truncate(seg)))
}

/// An id in a path. Beyond the id grammar, ids that start or end with `.` or contain `..`
/// are refused: some servers and frameworks strip a trailing dot or treat `.x` as a suffix
/// (security.md F14 `/Patient/P2.`), so they may not name the resource that was authorized.
fn path_id(seg: &str) -> Result<String, ClassifyError> {
    if !is_valid_id(seg) || seg.starts_with('.') || seg.ends_with('.') || seg.contains("..") {
        return Err(ClassifyError::InvalidId(truncate(seg)));
    }
    Ok(seg.to_owned())
}

/// `$name` → `name`, with the name restricted to what OperationDefinition codes use.
fn operation_name(seg: &str) -> Option<Result<String, ClassifyError>> {
    let name = seg.strip_prefix('$')?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    Some(if ok {
        Ok(name.to_owned())
    } else {
        Err(ClassifyError::InvalidPath(format!(
            "'{}' is not a valid operation name",
            truncate(seg)
        )))
    })
}

fn compartment(seg: &str) -> Result<ResourceType, ClassifyError> {
    let t = resource_type(seg)?;
    if COMPARTMENT_TYPES.contains(&t) {
        Ok(t)
    } else {
        Err(ClassifyError::InvalidPath(format!(
            "{t} is not a compartment; '/{t}/[id]/...' is not a FHIR REST path"
        )))
    }
}

/// The routing table of the FHIR REST API (R4 http.html, search.html, operations.html).
pub(super) fn route(
    verb: Verb,
    segments: &[&str],
    has_query: bool,
    headers: &http::HeaderMap,
    method: &http::Method,
    path: &str,
) -> Result<Interaction, ClassifyError> {
    use Verb::{Delete, Get, Patch, Post, Put};
    let na = || not_allowed(method, path);
    match *segments {
        [] => match verb {
            Get => Ok(Interaction::SearchSystem),
            Post => Ok(Interaction::BatchOrTransaction),
            _ => Err(na()),
        },
        ["metadata"] => match verb {
            Get => Ok(Interaction::Capabilities),
            _ => Err(na()),
        },
        ["_search"] => match verb {
            Post => Ok(Interaction::SearchSystem),
            _ => Err(na()),
        },
        ["_history"] => match verb {
            Get => Ok(Interaction::HistorySystem),
            _ => Err(na()),
        },
        [op] if op.starts_with('$') => {
            let name = operation_name(op).transpose()?.unwrap_or_default();
            match verb {
                Get | Post => Ok(Interaction::Operation {
                    name,
                    level: OperationLevel::System,
                }),
                _ => Err(na()),
            }
        }
        [t] => {
            let resource_type = resource_type(t)?;
            match verb {
                Get => Ok(Interaction::SearchType { resource_type }),
                Post => Ok(Interaction::Create {
                    resource_type,
                    conditional: if_none_exist(headers)?,
                }),
                // Conditional update/patch/delete without criteria would match everything.
                Put if has_query => Ok(Interaction::ConditionalUpdate { resource_type }),
                Patch if has_query => Ok(Interaction::ConditionalPatch { resource_type }),
                Delete if has_query => Ok(Interaction::ConditionalDelete { resource_type }),
                _ => Err(na()),
            }
        }
        [t, "_search"] => {
            let resource_type = resource_type(t)?;
            match verb {
                Post => Ok(Interaction::SearchType { resource_type }),
                _ => Err(na()),
            }
        }
        [t, "_history"] => {
            let resource_type = resource_type(t)?;
            match verb {
                Get => Ok(Interaction::HistoryType { resource_type }),
                _ => Err(na()),
            }
        }
        [t, op] if op.starts_with('$') => {
            let resource_type = resource_type(t)?;
            let name = operation_name(op).transpose()?.unwrap_or_default();
            match verb {
                Get | Post => Ok(Interaction::Operation {
                    name,
                    level: OperationLevel::Type(resource_type),
                }),
                _ => Err(na()),
            }
        }
        [t, id] => {
            let resource_type = resource_type(t)?;
            let id = path_id(id)?;
            match verb {
                Get => Ok(Interaction::Read { resource_type, id }),
                Put => Ok(Interaction::Update { resource_type, id }),
                Patch => Ok(Interaction::Patch { resource_type, id }),
                Delete => Ok(Interaction::Delete { resource_type, id }),
                Post => Err(na()),
            }
        }
        [t, id, "_history"] => {
            let resource_type = resource_type(t)?;
            let id = path_id(id)?;
            match verb {
                Get => Ok(Interaction::HistoryInstance { resource_type, id }),
                _ => Err(na()),
            }
        }
        [t, id, op] if op.starts_with('$') => {
            let resource_type = resource_type(t)?;
            let id = path_id(id)?;
            let name = operation_name(op).transpose()?.unwrap_or_default();
            match verb {
                Get | Post => Ok(Interaction::Operation {
                    name,
                    level: OperationLevel::Instance(resource_type, id),
                }),
                _ => Err(na()),
            }
        }
        [c, id, "_search"] => {
            let compartment = compartment(c)?;
            let id = path_id(id)?;
            match verb {
                Post => Ok(Interaction::SearchCompartment {
                    compartment,
                    id,
                    target: None,
                }),
                _ => Err(na()),
            }
        }
        [c, id, target] => {
            let compartment = compartment(c)?;
            let id = path_id(id)?;
            let target = if target == "*" {
                None
            } else {
                Some(resource_type(target)?)
            };
            match verb {
                Get => Ok(Interaction::SearchCompartment {
                    compartment,
                    id,
                    target,
                }),
                _ => Err(na()),
            }
        }
        [t, id, "_history", version] => {
            let resource_type = resource_type(t)?;
            let id = path_id(id)?;
            let version = path_id(version)?;
            match verb {
                Get => Ok(Interaction::Vread {
                    resource_type,
                    id,
                    version,
                }),
                _ => Err(na()),
            }
        }
        [c, id, target, "_search"] => {
            let compartment = compartment(c)?;
            let id = path_id(id)?;
            let target = Some(resource_type(target)?);
            match verb {
                Post => Ok(Interaction::SearchCompartment {
                    compartment,
                    id,
                    target,
                }),
                _ => Err(na()),
            }
        }
        _ => Err(ClassifyError::InvalidPath(format!(
            "'{}' is not a FHIR REST path",
            truncate(path)
        ))),
    }
}

/// `If-None-Exist: identifier=x` makes a create conditional. The value is a query string;
/// it must parse like one, so a malformed condition is refused before it reaches the
/// upstream.
fn if_none_exist(headers: &http::HeaderMap) -> Result<Option<String>, ClassifyError> {
    let Some(value) = headers.get(&IF_NONE_EXIST) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        ClassifyError::InvalidQuery("If-None-Exist header is not visible ASCII".to_owned())
    })?;
    let criteria = text.trim_start_matches('?');
    check_raw_query(criteria)?;
    let parsed = SearchParams::parse(criteria)?;
    if parsed.is_empty() {
        return Err(ClassifyError::InvalidQuery(
            "If-None-Exist header has no criteria".to_owned(),
        ));
    }
    Ok(Some(criteria.to_owned()))
}
