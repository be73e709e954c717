//! One search parameter occurrence → one SQL condition on `resources r`.
//!
//! Every condition has the shape `r.rid [NOT] IN (SELECT rid FROM idx_… WHERE …)`, with the
//! values of a comma list OR-ed inside and separate occurrences AND-ed by the caller.
//! Request text only ever reaches SQL as bound parameters.

use rusqlite::types::Value as SqlValue;

use super::values::{Prefix, parse_number, parse_token, split_list, split_prefix};
use crate::error::{Result, StoreError};
use crate::fhirtime;
use crate::index::{normalize, split_reference};
use crate::search_params::{self, ParamKind};

/// A compiled condition and its bound values.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `r.rid IN (...)` form: SQLite builds the list once, so it suits the filter that
    /// drives the query (the most selective one).
    pub sql: String,
    /// Correlated `EXISTS (...)` form with the same bound values, probed per candidate row
    /// through the `(rid, param)` indexes; used for every other filter so a broad one
    /// (`category=laboratory`) never materialises a huge list.
    pub exists_sql: Option<String>,
    pub args: Vec<SqlValue>,
    /// Lower drives first: references are the most selective, negations never drive.
    pub priority: u8,
}

impl Filter {
    fn direct(sql: String, args: Vec<SqlValue>) -> Filter {
        Filter {
            sql,
            exists_sql: None,
            args,
            priority: 0,
        }
    }

    fn indexed(
        table: &str,
        negate: bool,
        inner: String,
        args: Vec<SqlValue>,
        priority: u8,
    ) -> Filter {
        let not = if negate { "NOT " } else { "" };
        Filter {
            sql: format!("r.rid {not}IN (SELECT rid FROM {table} WHERE {inner})"),
            exists_sql: Some(format!(
                "{not}EXISTS (SELECT 1 FROM {table} WHERE {table}.rid = r.rid AND {inner})"
            )),
            args,
            priority: if negate { 9 } else { priority },
        }
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

/// Compile `base[:modifier]=value`; `Ok(None)` when the parameter is not supported.
pub fn compile(
    rtype: Option<&str>,
    base: &str,
    modifier: Option<&str>,
    value: &str,
    base_url: &str,
) -> Result<Option<Filter>> {
    if base.contains('.') || base.starts_with("_has") {
        return Ok(None); // chains and reverse chains are not supported
    }
    match base {
        "_id" => return Ok(Some(id_filter(modifier, value))),
        "_lastUpdated" => return last_updated(value).map(Some),
        _ => {}
    }
    let Some(def) = rtype.and_then(|t| search_params::lookup(t, base)) else {
        return Ok(None);
    };
    let table = match def.kind {
        ParamKind::String => "idx_string",
        ParamKind::Token | ParamKind::Uri => "idx_token",
        ParamKind::Date => "idx_date",
        ParamKind::Reference => "idx_ref",
        ParamKind::Number | ParamKind::Quantity => "idx_number",
    };
    let mut args = vec![text(def.resource), text(def.code)];
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(base, "`:missing` takes true or false")),
        };
        return Ok(Some(Filter::indexed(
            table,
            missing,
            "rtype = ? AND param = ?".to_owned(),
            args,
            8,
        )));
    }
    let mut negate = false;
    let mut conds = Vec::new();
    for v in split_list(value) {
        let cond = match def.kind {
            ParamKind::String => string_cond(base, modifier, &v, &mut args)?,
            ParamKind::Token | ParamKind::Uri => {
                match modifier {
                    None => {}
                    Some("not") => negate = true,
                    Some(_) => return Ok(None),
                }
                token_cond(&v, &mut args)
            }
            ParamKind::Date => {
                if modifier.is_some() {
                    return Ok(None);
                }
                let (prefix, rest) = split_prefix(&v);
                if prefix == Prefix::Ne {
                    negate = true;
                }
                date_cond(base, prefix, rest, &mut args)?
            }
            ParamKind::Number | ParamKind::Quantity => {
                if modifier.is_some() {
                    return Ok(None);
                }
                let (prefix, rest) = split_prefix(&v);
                if prefix == Prefix::Ne {
                    negate = true;
                }
                number_cond(base, def.kind, prefix, rest, &mut args)?
            }
            ParamKind::Reference => match reference_cond(modifier, &v, base_url, &mut args) {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        conds.push(cond);
    }
    let priority = match def.kind {
        ParamKind::Reference => 1,
        ParamKind::String => 2,
        ParamKind::Token | ParamKind::Uri => 3,
        ParamKind::Date | ParamKind::Number | ParamKind::Quantity => 4,
    };
    Ok(Some(Filter::indexed(
        table,
        negate,
        format!("rtype = ? AND param = ? AND ({})", conds.join(" OR ")),
        args,
        priority,
    )))
}

fn invalid(param: &str, why: &str) -> StoreError {
    StoreError::invalid(format!("search parameter {param}: {why}"), Some(param))
}

fn id_filter(modifier: Option<&str>, value: &str) -> Filter {
    let ids = split_list(value);
    let marks = vec!["?"; ids.len()].join(", ");
    Filter::direct(
        format!(
            "r.id {}IN ({marks})",
            if modifier == Some("not") { "NOT " } else { "" }
        ),
        ids.iter().map(|s| text(s)).collect(),
    )
}

fn last_updated(value: &str) -> Result<Filter> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    let mut negate = false;
    for v in split_list(value) {
        let (prefix, rest) = split_prefix(&v);
        negate |= prefix == Prefix::Ne;
        let (plo, phi) = fhirtime::parse_range(rest)
            .ok_or_else(|| invalid("_lastUpdated", "not a FHIR date"))?;
        // A version's lastUpdated is one millisecond: [t, t+1).
        let (c, a) = range_cond("r.updated_ms", "(r.updated_ms + 1)", prefix, plo, phi);
        conds.push(c);
        args.extend(a);
    }
    let body = conds.join(" OR ");
    let sql = if negate {
        format!("NOT ({body})")
    } else {
        format!("({body})")
    };
    // Not selective enough to drive a query.
    Ok(Filter {
        sql,
        exists_sql: None,
        args,
        priority: 5,
    })
}

/// Date comparison between a target range `[lo, hi)` and a parameter range `[plo, phi)`.
fn range_cond(lo: &str, hi: &str, prefix: Prefix, plo: i64, phi: i64) -> (String, Vec<SqlValue>) {
    let i = SqlValue::Integer;
    match prefix {
        Prefix::Eq | Prefix::Ne => (format!("({lo} >= ? AND {hi} <= ?)"), vec![i(plo), i(phi)]),
        Prefix::Gt => (format!("{hi} > ?"), vec![i(phi)]),
        Prefix::Lt => (format!("{lo} < ?"), vec![i(plo)]),
        Prefix::Ge => (format!("{hi} > ?"), vec![i(plo)]),
        Prefix::Le => (format!("{lo} < ?"), vec![i(phi)]),
        Prefix::Sa => (format!("{lo} >= ?"), vec![i(phi)]),
        Prefix::Eb => (format!("{hi} <= ?"), vec![i(plo)]),
        Prefix::Ap => {
            // Approximately: the parameter range widened by 10% of its distance from now,
            // at least a day.
            let delta = ((fhirtime::now_ms() - plo).abs() / 10).max(86_400_000);
            (
                format!("({lo} < ? AND {hi} > ?)"),
                vec![i(phi.saturating_add(delta)), i(plo.saturating_sub(delta))],
            )
        }
    }
}

fn date_cond(param: &str, prefix: Prefix, value: &str, args: &mut Vec<SqlValue>) -> Result<String> {
    let (plo, phi) =
        fhirtime::parse_range(value).ok_or_else(|| invalid(param, "not a FHIR date"))?;
    let (c, a) = range_cond("lo", "hi", prefix, plo, phi);
    args.extend(a);
    Ok(c)
}

fn string_cond(
    param: &str,
    modifier: Option<&str>,
    value: &str,
    args: &mut Vec<SqlValue>,
) -> Result<String> {
    match modifier {
        None => {
            let n = normalize(value);
            // Prefix match as a range, so the (rtype, param, norm) index serves it.
            args.push(text(&n));
            args.push(SqlValue::Text(format!("{n}\u{10FFFF}")));
            Ok("(norm >= ? AND norm < ?)".to_owned())
        }
        Some("exact") => {
            args.push(text(value));
            Ok("exact = ?".to_owned())
        }
        Some("contains") => {
            let escaped = normalize(value)
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            args.push(SqlValue::Text(format!("%{escaped}%")));
            Ok("norm LIKE ? ESCAPE '\\'".to_owned())
        }
        Some(m) => Err(StoreError::NotSupported(format!(
            "modifier :{m} is not supported on string parameter {param}"
        ))),
    }
}

fn token_cond(value: &str, args: &mut Vec<SqlValue>) -> String {
    let t = parse_token(value);
    let mut parts = Vec::new();
    if let Some(code) = t.code {
        parts.push("code = ?");
        args.push(SqlValue::Text(code));
    }
    if let Some(system) = t.system {
        parts.push("system = ?");
        args.push(SqlValue::Text(system));
    }
    if parts.is_empty() {
        "1 = 1".to_owned()
    } else {
        format!("({})", parts.join(" AND "))
    }
}

fn number_cond(
    param: &str,
    kind: ParamKind,
    prefix: Prefix,
    value: &str,
    args: &mut Vec<SqlValue>,
) -> Result<String> {
    let mut parts = value.splitn(3, '|');
    let number = parts.next().unwrap_or_default();
    let (v, lo, hi) = parse_number(number).ok_or_else(|| invalid(param, "not a number"))?;
    let r = SqlValue::Real;
    let mut cond = match prefix {
        Prefix::Eq | Prefix::Ne => {
            args.extend([r(lo), r(hi)]);
            "(value >= ? AND value < ?)".to_owned()
        }
        Prefix::Gt | Prefix::Sa => {
            args.push(r(v));
            "value > ?".to_owned()
        }
        Prefix::Lt | Prefix::Eb => {
            args.push(r(v));
            "value < ?".to_owned()
        }
        Prefix::Ge => {
            args.push(r(v));
            "value >= ?".to_owned()
        }
        Prefix::Le => {
            args.push(r(v));
            "value <= ?".to_owned()
        }
        Prefix::Ap => {
            let d = (v * 0.1).abs();
            args.extend([r(v - d), r(v + d)]);
            "(value >= ? AND value <= ?)".to_owned()
        }
    };
    if kind == ParamKind::Quantity {
        let system = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !system.is_empty() {
            cond.push_str(" AND system = ?");
            args.push(text(system));
        }
        if !code.is_empty() {
            cond.push_str(" AND code = ?");
            args.push(text(code));
        }
        cond = format!("({cond})");
    }
    Ok(cond)
}

fn reference_cond(
    modifier: Option<&str>,
    value: &str,
    base_url: &str,
    args: &mut Vec<SqlValue>,
) -> Option<String> {
    let type_modifier = match modifier {
        None => None,
        Some(m) if crate::fhir::ResourceType::from_name(m).is_some() => Some(m),
        Some(_) => return None, // :identifier, :above, ... are not supported
    };
    let local = if value.starts_with("http://") || value.starts_with("https://") {
        let base = base_url.trim_end_matches('/');
        match value
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            Some(rest) if !base.is_empty() => rest.to_owned(),
            _ => {
                args.push(text(value));
                return Some("url = ?".to_owned());
            }
        }
    } else {
        value.to_owned()
    };
    if local.contains('/') {
        let (t, id) = split_reference(&local)?;
        if type_modifier.is_some_and(|m| m != t) {
            return Some("0 = 1".to_owned());
        }
        args.extend([text(id), text(t)]);
        Some("(target_id = ? AND target_type = ?)".to_owned())
    } else {
        args.push(text(&local));
        match type_modifier {
            Some(t) => {
                args.push(text(t));
                Some("(target_id = ? AND target_type = ?)".to_owned())
            }
            None => Some("target_id = ?".to_owned()),
        }
    }
}
