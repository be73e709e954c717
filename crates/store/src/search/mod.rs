//! Search: query parameters → SQL over the index tables → one page of matches plus
//! `_include`/`_revinclude` resources. The REST layer turns a [`SearchResult`] into a Bundle.

mod filter;
mod values;

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::error::{Result, StoreError};
use crate::ops::Stored;
use crate::search_params::{self, PATIENT_COMPARTMENT, ParamKind};

pub use filter::Filter;

/// Page size when the client sends no `_count`.
pub const DEFAULT_COUNT: usize = 50;
/// Upper bound on `_count`, so one request cannot pull the whole store into memory.
pub const MAX_COUNT: usize = 1000;
/// Upper bound on resources added by `_include`/`_revinclude` to one page.
pub const MAX_INCLUDED: usize = 1000;

/// What to search.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// The resource type; `None` only for `Patient/{id}/$everything`.
    pub rtype: Option<String>,
    /// Decoded `name[:modifier]` / value pairs, in request order.
    pub params: Vec<(String, String)>,
    /// `Patient/{id}/...`: restrict to that patient's compartment.
    pub compartment: Option<String>,
    /// `Prefer: handling=strict`: unknown parameters are an error, not a warning.
    pub strict: bool,
    /// The store's base URL, so absolute references to it match local ones.
    pub base_url: String,
}

impl SearchRequest {
    pub fn new(rtype: &str, query: &str) -> Self {
        SearchRequest {
            rtype: Some(rtype.to_owned()),
            params: parse_query(query),
            ..Default::default()
        }
    }
}

/// `_total` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    None,
    Estimate,
    Accurate,
}

/// One page of search results.
#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub matches: Vec<Stored>,
    pub included: Vec<Stored>,
    pub total: Option<i64>,
    pub offset: usize,
    pub count: usize,
    pub has_next: bool,
    /// Parameters that were ignored (lenient handling), for an OperationOutcome entry.
    pub warnings: Vec<String>,
    /// `_elements` to keep (empty: whole resources).
    pub elements: Vec<String>,
    /// `_summary=count`: only the total.
    pub summary_count: bool,
    /// The query (without `_offset`) to build paging links from.
    pub link_params: Vec<(String, String)>,
}

/// Decode a query string or form body into pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Run a search.
pub fn search(conn: &Connection, req: &SearchRequest) -> Result<SearchResult> {
    let mut out = SearchResult {
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let mut filters = Vec::new();
    let mut sort: Vec<(String, bool)> = Vec::new();
    let mut includes = Vec::new();
    let mut revincludes = Vec::new();
    let mut total_mode = TotalMode::Accurate;
    let mut unsupported = Vec::new();
    let rtype = req.rtype.as_deref();

    for (name, value) in &req.params {
        if name != "_offset" {
            out.link_params.push((name.clone(), value.clone()));
        }
        let (base, modifier) = match name.split_once(':') {
            Some((b, m)) => (b, Some(m)),
            None => (name.as_str(), None),
        };
        match base {
            "_count" => {
                out.count = value
                    .parse::<usize>()
                    .map_err(|_| StoreError::invalid("_count must be a number", Some("_count")))?
                    .min(MAX_COUNT);
            }
            "_offset" => {
                out.offset = value.parse().map_err(|_| {
                    StoreError::invalid("_offset must be a number", Some("_offset"))
                })?;
            }
            "_sort" => {
                for key in value.split(',').filter(|k| !k.is_empty()) {
                    let (key, desc) = match key.strip_prefix('-') {
                        Some(k) => (k, true),
                        None => (key, false),
                    };
                    let known = matches!(key, "_id" | "_lastUpdated")
                        || rtype.and_then(|t| search_params::lookup(t, key)).is_some();
                    if known {
                        sort.push((key.to_owned(), desc));
                    } else {
                        unsupported.push(format!("_sort={key}"));
                    }
                }
            }
            "_include" => includes.push(value.clone()),
            "_revinclude" => revincludes.push(value.clone()),
            "_summary" => match value.as_str() {
                "count" => out.summary_count = true,
                "false" => {}
                other => unsupported.push(format!("_summary={other}")),
            },
            "_total" => {
                total_mode = match value.as_str() {
                    "none" => TotalMode::None,
                    "estimate" => TotalMode::Estimate,
                    "accurate" => TotalMode::Accurate,
                    other => {
                        return Err(StoreError::invalid(
                            format!("_total must be none, estimate or accurate, not '{other}'"),
                            Some("_total"),
                        ));
                    }
                };
            }
            "_elements" => {
                out.elements = value.split(',').map(|s| s.trim().to_owned()).collect();
            }
            "_format" | "_pretty" => {}
            _ => match filter::compile(rtype, base, modifier, value, &req.base_url)? {
                Some(f) => filters.push(f),
                None => unsupported.push(name.clone()),
            },
        }
    }
    if !unsupported.is_empty() {
        let msg = format!("unsupported search parameters: {}", unsupported.join(", "));
        if req.strict {
            return Err(StoreError::NotSupported(msg));
        }
        out.warnings.push(msg);
    }
    if let Some(patient) = &req.compartment {
        filters.push(compartment_filter(rtype, patient)?);
    }

    // WHERE clause.
    let mut sql_where = String::from("r.deleted = 0");
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(t) = rtype {
        sql_where.push_str(" AND r.rtype = ?");
        args.push(SqlValue::Text(t.to_owned()));
    }
    filters.sort_by_key(|f| f.priority);
    let mut driving = true;
    for f in &filters {
        sql_where.push_str(" AND ");
        match (&f.exists_sql, driving) {
            (Some(exists), false) => sql_where.push_str(exists),
            (Some(_), true) => {
                sql_where.push_str(&f.sql);
                driving = false;
            }
            (None, _) => {
                sql_where.push_str(&f.sql);
                // `_id` and compartment lists are small: let them drive.
                driving &= f.priority != 0;
            }
        }
        args.extend(f.args.iter().cloned());
    }

    let want_total = out.summary_count || out.count == 0 || total_mode != TotalMode::None;
    if out.summary_count || out.count == 0 {
        out.total = Some(count(conn, &sql_where, &args)?);
        return Ok(out);
    }

    // ORDER BY.
    let mut order = String::new();
    for (key, desc) in &sort {
        let dir = if *desc { "DESC" } else { "ASC" };
        match key.as_str() {
            "_id" => order.push_str(&format!("r.id {dir}, ")),
            "_lastUpdated" => order.push_str(&format!("r.updated_ms {dir}, ")),
            _ => {
                let Some(def) = rtype.and_then(|t| search_params::lookup(t, key)) else {
                    continue;
                };
                let (table, col) = match def.kind {
                    ParamKind::Date => ("idx_date", if *desc { "MAX(hi)" } else { "MIN(lo)" }),
                    ParamKind::String => ("idx_string", "MIN(norm)"),
                    ParamKind::Token | ParamKind::Uri => ("idx_token", "MIN(code)"),
                    ParamKind::Number | ParamKind::Quantity => ("idx_number", "MIN(value)"),
                    ParamKind::Reference => ("idx_ref", "MIN(target_id)"),
                };
                // Codes come from the generated table, never from the request.
                order.push_str(&format!(
                    "(SELECT {col} FROM {table} s WHERE s.rid = r.rid AND s.param = '{}') {dir}, ",
                    def.code
                ));
            }
        }
    }
    order.push_str("r.rid ASC");

    let sql = format!(
        "SELECT r.rtype, r.id, r.version, r.updated_ms, r.body, r.rid FROM resources r \
         WHERE {sql_where} ORDER BY {order} LIMIT {} OFFSET {}",
        out.count + 1,
        out.offset
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rids = Vec::new();
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    while let Some(r) = rows.next()? {
        if out.matches.len() == out.count {
            out.has_next = true;
            break;
        }
        out.matches.push(Stored {
            rtype: r.get(0)?,
            id: r.get(1)?,
            version: r.get(2)?,
            updated_ms: r.get(3)?,
            body: r.get(4)?,
        });
        rids.push(r.get::<_, i64>(5)?);
    }
    drop(rows);
    if want_total {
        out.total = if !out.has_next && (out.offset == 0 || !out.matches.is_empty()) {
            Some(i64::try_from(out.offset + out.matches.len()).unwrap_or(i64::MAX))
        } else {
            Some(count(conn, &sql_where, &args)?)
        };
    }
    for inc in &includes {
        include(conn, rtype, inc, &rids, &mut out)?;
    }
    for rev in &revincludes {
        revinclude(conn, rev, &mut out)?;
    }
    if rtype.is_none() && req.compartment.is_some() && !rids.is_empty() {
        include_referenced(conn, &rids, &mut out)?;
    }
    Ok(out)
}

/// `$everything` also returns what the patient's resources point at outside the
/// compartment (practitioners, organizations, locations, medications, ...).
fn include_referenced(conn: &Connection, rids: &[i64], out: &mut SearchResult) -> Result<()> {
    let rid_list = rids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let compartment_types = PATIENT_COMPARTMENT
        .iter()
        .map(|(t, _)| format!("'{t}'"))
        .chain(std::iter::once("'Patient'".to_owned()))
        .collect::<Vec<_>>()
        .join(", ");
    // Only integers and generated type names are spliced into the SQL.
    let sql = format!(
        "SELECT DISTINCT x.rtype, x.id, x.version, x.updated_ms, x.body FROM idx_ref i \
         JOIN resources x ON x.rtype = i.target_type AND x.id = i.target_id \
         WHERE i.rid IN ({rid_list}) AND x.deleted = 0 \
         AND x.rtype NOT IN ({compartment_types}) LIMIT {MAX_INCLUDED}"
    );
    push_included(conn, &sql, &[], out)
}

fn count(conn: &Connection, sql_where: &str, args: &[SqlValue]) -> Result<i64> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM resources r WHERE {sql_where}"
        ))?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?)
}

/// Restrict to the Patient compartment of `patient` (CompartmentDefinition/patient).
fn compartment_filter(rtype: Option<&str>, patient: &str) -> Result<Filter> {
    let mut pairs = Vec::new();
    for (t, codes) in PATIENT_COMPARTMENT {
        if rtype.is_none_or(|want| want == *t) {
            for c in *codes {
                pairs.push(format!("'{t}.{c}'"));
            }
        }
    }
    if pairs.is_empty() {
        return Err(StoreError::NotSupported(format!(
            "{} is not in the Patient compartment",
            rtype.unwrap_or("?")
        )));
    }
    // Table entries are generated identifiers, never request text.
    let mut sql = format!(
        "(r.rid IN (SELECT rid FROM idx_ref WHERE target_type = 'Patient' AND target_id = ? \
         AND (rtype || '.' || param) IN ({}))",
        pairs.join(", ")
    );
    let mut args = vec![SqlValue::Text(patient.to_owned())];
    if rtype.is_none_or(|t| t == "Patient") {
        sql.push_str(" OR (r.rtype = 'Patient' AND r.id = ?)");
        args.push(SqlValue::Text(patient.to_owned()));
    }
    sql.push(')');
    Ok(Filter {
        sql,
        exists_sql: None,
        args,
        priority: 0,
    })
}

/// `_include=Source:param[:Target]`.
fn include(
    conn: &Connection,
    rtype: Option<&str>,
    spec: &str,
    rids: &[i64],
    out: &mut SearchResult,
) -> Result<()> {
    let mut parts = spec.split(':');
    let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
        out.warnings
            .push(format!("_include={spec} is not Source:param[:Target]"));
        return Ok(());
    };
    let target = parts.next();
    if rtype != Some(source) || search_params::lookup(source, param).is_none() || rids.is_empty() {
        if rtype != Some(source) || search_params::lookup(source, param).is_none() {
            out.warnings
                .push(format!("_include={spec} is not supported"));
        }
        return Ok(());
    }
    let rid_list = rids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT DISTINCT x.rtype, x.id, x.version, x.updated_ms, x.body FROM idx_ref i \
         JOIN resources x ON x.rtype = i.target_type AND x.id = i.target_id \
         WHERE i.rid IN ({rid_list}) AND i.param = ?1 AND x.deleted = 0 \
         AND (?2 IS NULL OR i.target_type = ?2) LIMIT {MAX_INCLUDED}"
    );
    push_included(
        conn,
        &sql,
        &[
            SqlValue::Text(param.to_owned()),
            target.map_or(SqlValue::Null, |t| SqlValue::Text(t.to_owned())),
        ],
        out,
    )
}

/// `_revinclude=Source:param`: resources of type Source whose `param` points at a match.
fn revinclude(conn: &Connection, spec: &str, out: &mut SearchResult) -> Result<()> {
    let mut parts = spec.split(':');
    let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
        out.warnings
            .push(format!("_revinclude={spec} is not Source:param"));
        return Ok(());
    };
    if search_params::lookup(source, param).is_none() {
        out.warnings
            .push(format!("_revinclude={spec} is not supported"));
        return Ok(());
    }
    if out.matches.is_empty() {
        return Ok(());
    }
    let mut args = vec![
        SqlValue::Text(source.to_owned()),
        SqlValue::Text(param.to_owned()),
    ];
    let mut keys = Vec::new();
    for m in &out.matches {
        keys.push("(?, ?)");
        args.push(SqlValue::Text(m.rtype.clone()));
        args.push(SqlValue::Text(m.id.clone()));
    }
    let sql = format!(
        "SELECT DISTINCT r.rtype, r.id, r.version, r.updated_ms, r.body FROM idx_ref i \
         JOIN resources r ON r.rid = i.rid \
         WHERE i.rtype = ? AND i.param = ? AND (i.target_type, i.target_id) IN (VALUES {}) \
         AND r.deleted = 0 LIMIT {MAX_INCLUDED}",
        keys.join(", ")
    );
    push_included(conn, &sql, &args, out)
}

fn push_included(
    conn: &Connection,
    sql: &str,
    args: &[SqlValue],
    out: &mut SearchResult,
) -> Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(Stored {
            rtype: r.get(0)?,
            id: r.get(1)?,
            version: r.get(2)?,
            updated_ms: r.get(3)?,
            body: r.get(4)?,
        })
    })?;
    for s in rows {
        let s = s?;
        let dup = out
            .matches
            .iter()
            .chain(out.included.iter())
            .any(|m| m.rtype == s.rtype && m.id == s.id);
        if !dup && out.included.len() < MAX_INCLUDED {
            out.included.push(s);
        }
    }
    Ok(())
}

/// Ids of `rtype` resources matching `query` (conditional create/update/delete and
/// conditional references); at most `limit`.
pub fn matching_ids(
    conn: &Connection,
    rtype: &str,
    query: &str,
    limit: usize,
) -> Result<Vec<String>> {
    let mut req = SearchRequest::new(rtype, query);
    req.strict = true;
    req.params.retain(|(k, _)| k != "_count");
    req.params.push(("_count".into(), limit.to_string()));
    Ok(search(conn, &req)?
        .matches
        .into_iter()
        .map(|m| m.id)
        .collect())
}
