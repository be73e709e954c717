//! Search parameters, parsed once and kept distinguishable: repeats, comma lists,
//! modifiers (`:exact`, `:Patient`) and chains (`subject.name`).
//!
//! Authorization decides on these values, and the upstream receives them re-serialised by
//! [`SearchParams::to_query_string`]. Parameters that were not touched keep their original
//! encoding byte for byte, so what was authorized is what is sent: the gateway never
//! re-encodes a value it did not change.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::ClassifyError;

/// Most parameters one request may carry (URL query and form body together). Far above any
/// real client, low enough that hostile input is cheap to reject (security.md F17).
pub const MAX_PARAMS: usize = 1_000;

/// Characters encoded when the gateway itself writes a name or value ([`SearchParams::push`]).
/// Everything with a meaning in a query string (`&`, `=`, `+`, `#`, `%`) or that servers treat
/// inconsistently is encoded; `:`, `,`, `/`, `|` and `$` stay readable because FHIR servers
/// accept them raw and they make logs legible.
const QUERY_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b';');

/// One `name[:modifier][.chain]=value[,value…]` pair, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParam {
    /// Base parameter name, decoded (`subject` in `subject:Patient.name`).
    pub name: String,
    /// Modifier without the colon (`Patient`, `exact`, `missing`, ...). For `_has` this is
    /// the whole rest of the name (`Observation:patient:code` in `_has:Observation:patient:code`).
    pub modifier: Option<String>,
    /// Chain after the first `.` (`name` in `subject.name`), may itself contain dots.
    pub chain: Option<String>,
    /// Decoded values, comma list split (FHIR `\,` escapes honoured).
    ///
    /// `\,` becomes a literal `,`; the other FHIR escapes (`\\`, `\|`, `\$`) are kept as
    /// written because their meaning depends on the parameter type.
    pub values: Vec<String>,
    /// Name exactly as received (still encoded), for faithful re-serialisation.
    pub raw_name: String,
    /// Value exactly as received (still encoded).
    pub raw_value: String,
}

impl SearchParam {
    /// Build a parameter from a decoded name and value, as [`SearchParams::push`] does.
    pub fn new(name: &str, value: &str) -> Self {
        let (base, modifier, chain) = split_name(name);
        SearchParam {
            name: base.to_owned(),
            modifier: modifier.map(str::to_owned),
            chain: chain.map(str::to_owned),
            values: split_values(value.to_owned()),
            raw_name: utf8_percent_encode(name, QUERY_ENCODE).to_string(),
            raw_value: utf8_percent_encode(value, QUERY_ENCODE).to_string(),
        }
    }

    /// True for chained parameters (`subject.name`, `subject:Patient.name`) and reverse
    /// chains (`_has:…`): parameters whose target the gateway cannot see from the value alone.
    pub fn is_chain_or_has(&self) -> bool {
        self.chain.is_some() || self.name == "_has"
    }

    /// The resource type named by a type modifier (`Patient` in `subject:Patient`), if the
    /// modifier is one. Case-sensitive, like resource type names everywhere.
    pub fn type_modifier(&self) -> Option<crate::ResourceType> {
        self.modifier
            .as_deref()
            .and_then(crate::ResourceType::from_name)
    }

    /// The decoded name with its modifier and chain (`subject:Patient.name`).
    pub fn full_name(&self) -> String {
        let mut s = self.name.clone();
        if let Some(m) = &self.modifier {
            s.push(':');
            s.push_str(m);
        }
        if let Some(c) = &self.chain {
            s.push('.');
            s.push_str(c);
        }
        s
    }
}

/// All parameters of a request, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchParams {
    pub params: Vec<SearchParam>,
}

impl SearchParams {
    /// Parse a query string (without the leading `?`) or form body.
    ///
    /// Empty pieces (`a=1&&b=2`) are skipped; a piece without `=` is a parameter with an
    /// empty value. `+` means space (both in queries and form bodies). Rejected with
    /// [`ClassifyError::InvalidQuery`]: more than [`MAX_PARAMS`] parameters, malformed
    /// `%` escapes, escapes that do not decode to UTF-8, NUL or other control characters,
    /// a raw `#`, and parameters without a name.
    pub fn parse(query: &str) -> Result<Self, ClassifyError> {
        let mut out = SearchParams::default();
        out.extend_from_query(query)?;
        Ok(out)
    }

    /// Parse an `application/x-www-form-urlencoded` body (a `POST _search`).
    pub fn parse_form(body: &[u8]) -> Result<Self, ClassifyError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ClassifyError::InvalidQuery("form body is not UTF-8".to_owned()))?;
        Self::parse(text)
    }

    /// Append the parameters of another query string or form body, keeping the
    /// [`MAX_PARAMS`] cap over the combined list. On error the list may hold part of the
    /// new parameters; callers reject the whole request.
    pub fn extend_from_query(&mut self, query: &str) -> Result<(), ClassifyError> {
        for piece in query.split('&') {
            if piece.is_empty() {
                continue;
            }
            if self.params.len() >= MAX_PARAMS {
                return Err(ClassifyError::InvalidQuery(format!(
                    "more than {MAX_PARAMS} parameters"
                )));
            }
            self.params.push(parse_pair(piece)?);
        }
        Ok(())
    }

    /// Parameters with this base name (any modifier/chain).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SearchParam> + 'a {
        self.params.iter().filter(move |p| p.name == name)
    }

    /// Every value of every parameter with this base name, comma lists flattened.
    pub fn values_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.named(name)
            .flat_map(|p| p.values.iter().map(String::as_str))
    }

    /// The first value of the first parameter with this base name.
    pub fn first_value(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.values.first())
            .map(String::as_str)
    }

    /// True when any parameter has this base name.
    pub fn contains(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name == name)
    }

    /// Append `name=value` (value given decoded; it is encoded on serialisation).
    pub fn push(&mut self, name: &str, value: &str) {
        self.params.push(SearchParam::new(name, value));
    }

    /// Remove every parameter with this base name (any modifier/chain); returns how many.
    pub fn remove_named(&mut self, name: &str) -> usize {
        let before = self.params.len();
        self.params.retain(|p| p.name != name);
        before - self.params.len()
    }

    /// Replace every parameter with this base name (any modifier/chain) by one
    /// `name=value` at the position of the first one removed (or at the end). `name` is a
    /// base name; use [`Self::remove_named`] and [`Self::push`] to write a modifier.
    pub fn set(&mut self, name: &str, value: &str) {
        let at = self.params.iter().position(|p| p.name == name);
        self.remove_named(name);
        let param = SearchParam::new(name, value);
        match at {
            Some(i) if i <= self.params.len() => self.params.insert(i, param),
            _ => self.params.push(param),
        }
    }

    /// Keep only the parameters for which `keep` is true (e.g. drop `_include` values
    /// authorization refuses), preserving order and the others' raw encoding.
    pub fn retain(&mut self, keep: impl FnMut(&SearchParam) -> bool) {
        self.params.retain(keep);
    }

    /// True when any parameter is chained or a `_has` reverse chain.
    pub fn has_chain_or_has(&self) -> bool {
        self.params.iter().any(SearchParam::is_chain_or_has)
    }

    /// Re-serialise in order; unchanged parameters keep their original encoding. The only
    /// differences from the received query: empty pieces are gone and a bare `name` is
    /// written `name=` (the same parameter to every FHIR server).
    pub fn to_query_string(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&p.raw_name);
            out.push('=');
            out.push_str(&p.raw_value);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, SearchParam> {
        self.params.iter()
    }
}

impl<'a> IntoIterator for &'a SearchParams {
    type Item = &'a SearchParam;
    type IntoIter = std::slice::Iter<'a, SearchParam>;
    fn into_iter(self) -> Self::IntoIter {
        self.params.iter()
    }
}

fn parse_pair(piece: &str) -> Result<SearchParam, ClassifyError> {
    let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
    let name = decode(raw_name)?;
    if name.is_empty() {
        return Err(ClassifyError::InvalidQuery(
            "query parameter without a name".to_owned(),
        ));
    }
    let value = decode(raw_value)?;
    let (base, modifier, chain) = split_name(&name);
    if base.is_empty() {
        return Err(ClassifyError::InvalidQuery(format!(
            "query parameter '{name}' has no base name"
        )));
    }
    Ok(SearchParam {
        name: base.to_owned(),
        modifier: modifier.map(str::to_owned),
        chain: chain.map(str::to_owned),
        values: split_values(value),
        raw_name: raw_name.to_owned(),
        raw_value: raw_value.to_owned(),
    })
}

/// `+` → space, then strict percent-decoding: every `%` must start a two-hex-digit escape
/// and the result must be UTF-8 without control characters.
fn decode(raw: &str) -> Result<String, ClassifyError> {
    let bytes = raw.as_bytes();
    // Most names and values need no decoding; skip the byte-by-byte copy for them.
    if !bytes.iter().any(|b| matches!(b, b'%' | b'+' | b'#')) {
        return no_controls(raw.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|h| hex(*h));
                let lo = bytes.get(i + 2).and_then(|l| hex(*l));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => {
                        return Err(ClassifyError::InvalidQuery(
                            "malformed percent-escape in query".to_owned(),
                        ));
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'#' => {
                return Err(ClassifyError::InvalidQuery(
                    "fragment ('#') in query".to_owned(),
                ));
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| {
        ClassifyError::InvalidQuery("query parameter does not decode to UTF-8".to_owned())
    })?;
    no_controls(text)
}

fn no_controls(text: String) -> Result<String, ClassifyError> {
    // Tab, CR and LF could split a header or log line downstream; no FHIR search needs them.
    if text.chars().any(char::is_control) {
        return Err(ClassifyError::InvalidQuery(
            "control character in query parameter".to_owned(),
        ));
    }
    Ok(text)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `subject:Patient.name` → (`subject`, `Patient`, `name`); the first `.` after the modifier
/// starts the chain. `_has` keeps everything after its first `:` as the modifier, because its
/// colon-separated parts are one reverse-chain expression.
fn split_name(name: &str) -> (&str, Option<&str>, Option<&str>) {
    let base_end = name.find([':', '.']).unwrap_or(name.len());
    let (base, rest) = name.split_at(base_end);
    if let Some(after_colon) = rest.strip_prefix(':') {
        if base == "_has" {
            return (base, Some(after_colon), None);
        }
        match after_colon.split_once('.') {
            Some((m, c)) => (base, Some(m), Some(c)),
            None => (base, Some(after_colon), None),
        }
    } else if let Some(chain) = rest.strip_prefix('.') {
        (base, None, Some(chain))
    } else {
        (base, None, None)
    }
}

/// Split a decoded value at commas not escaped as `\,`. A value with no commas is one value
/// (possibly empty).
fn split_values(value: String) -> Vec<String> {
    if !value.contains([',', '\\']) {
        return vec![value];
    }
    let mut values = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => current.push(','),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            ',' => values.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    values.push(current);
    values
}

#[cfg(test)]
mod tests;
