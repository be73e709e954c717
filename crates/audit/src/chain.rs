//! The line format and the hash chain.
//!
//! Every line is `{"seq":N,"prev":"<64 hex>","event":{AuditEvent}}` followed by `\n`, with
//! exactly that key order and no whitespace between the three keys. `seq` counts from 1 and
//! never restarts across rotated files; `prev` is the lowercase hex SHA-256 of the previous
//! line's bytes without its `\n` (64 zeros for seq 1). Because the hash covers the raw bytes,
//! verification never re-serialises JSON: any edit, even of whitespace inside the event,
//! breaks the link to the next line.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// `prev` of the first record ever written.
pub const GENESIS: [u8; 32] = [0; 32];

/// Where the chain continues: the next sequence number and the hash of the last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub next_seq: u64,
    pub prev: [u8; 32],
}

impl ChainHead {
    pub const fn genesis() -> ChainHead {
        ChainHead {
            next_seq: 1,
            prev: GENESIS,
        }
    }

    /// The head after a line with `seq` and these bytes (without `\n`).
    pub fn after(seq: u64, line: &[u8]) -> ChainHead {
        ChainHead {
            next_seq: seq.saturating_add(1),
            prev: hash_line(line),
        }
    }

    /// Append the next line (with `\n`) around an already-serialised event to `out`, advance
    /// the head, and return the line's sequence number.
    pub fn seal(&mut self, event_json: &[u8], out: &mut Vec<u8>) -> u64 {
        let seq = self.next_seq;
        let start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(hex(&self.prev).as_bytes());
        out.extend_from_slice(b"\",\"event\":");
        out.extend_from_slice(event_json);
        out.push(b'}');
        let line = out.get(start..).unwrap_or_default();
        *self = ChainHead::after(seq, line);
        out.push(b'\n');
        seq
    }
}

/// SHA-256 of a line's bytes without the trailing newline.
pub fn hash_line(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

pub fn hex(bytes: &[u8; 32]) -> String {
    // Once per record: a table beats 32 trips through the formatter.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// The chain fields of one line, the event left unparsed.
#[derive(Debug, Clone, Copy)]
pub struct LineHeader<'a> {
    pub seq: u64,
    pub prev: [u8; 32],
    pub event: &'a str,
}

/// Parse a line (without `\n`) into its chain fields; `Err` says what is wrong.
pub fn parse_line(line: &[u8]) -> Result<LineHeader<'_>, String> {
    let raw: RawRecord<'_> =
        serde_json::from_slice(line).map_err(|e| format!("not a chain record: {e}"))?;
    let prev = parse_hex(raw.prev).ok_or_else(|| "prev is not a 64-digit hex hash".to_owned())?;
    Ok(LineHeader {
        seq: raw.seq,
        prev,
        event: raw.event.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_lines_chain_and_parse_back() {
        let mut head = ChainHead::genesis();
        let mut out = Vec::new();
        assert_eq!(head.seal(br#"{"a":1}"#, &mut out), 1);
        let first_end = out.len() - 1;
        assert_eq!(head.seal(br#"{"a":2}"#, &mut out), 2);
        let text = String::from_utf8(out.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                r#"{{"seq":1,"prev":"{}","event":{{"a":1}}}}"#,
                "0".repeat(64)
            )
        );
        let second = parse_line(lines[1].as_bytes()).unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev, hash_line(&out[..first_end]));
        assert_eq!(second.event, r#"{"a":2}"#);
        assert_eq!(head.next_seq, 3);
        assert_eq!(parse_hex(&hex(&head.prev)), Some(head.prev));
    }
}
