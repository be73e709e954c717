//! JSON parsing that refuses duplicate object members at any depth.
//!
//! RFC 7515 §4 and RFC 7519 §4 let a parser either reject duplicates or take the last one;
//! serde maps take the last one, so `{"alg":"RS256","alg":"none"}` would mean different
//! things to different parsers. We reject, before any value is interpreted.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a JSON document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictJsonError {
    /// Not JSON, or not an object at the top level.
    Invalid,
    /// An object has the same member name twice.
    Duplicate,
}

const DUPLICATE_MARKER: &str = "fhirgate: duplicate member";

/// Parse `bytes` as a JSON object, refusing duplicate members anywhere inside.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(m))) => Ok(m),
        Ok(_) => Err(StrictJsonError::Invalid),
        Err(e) if e.to_string().contains(DUPLICATE_MARKER) => Err(StrictJsonError::Duplicate),
        Err(_) => Err(StrictJsonError::Invalid),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE_MARKER));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"alg":"RS256","alg":"none"}"#),
            Err(StrictJsonError::Duplicate)
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":2}}"#),
            Err(StrictJsonError::Duplicate)
        );
        assert_eq!(
            parse_object(br#"{"a":[{"b":1,"b":1}]}"#),
            Err(StrictJsonError::Duplicate)
        );
        // Escaped spelling of the same name is still the same member.
        assert_eq!(
            parse_object(br#"{"sub":"a","s\u0075b":"b"}"#),
            Err(StrictJsonError::Duplicate)
        );
    }

    #[test]
    fn ordinary_objects_parse() {
        let m = parse_object(br#"{"a":1,"b":[1,2.5,"x",null,true],"c":{"d":-3}}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["c"]["d"], Value::from(-3));
    }

    #[test]
    fn non_objects_and_garbage_rejected() {
        for bad in [
            &b"[]"[..],
            b"\"x\"",
            b"1",
            b"{",
            b"{\"a\":1} x",
            b"\xff\xfe",
            b"{\"a\":1e999}",
        ] {
            assert_eq!(parse_object(bad), Err(StrictJsonError::Invalid), "{bad:?}");
        }
    }
}
