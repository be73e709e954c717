//! A JSON scanner for the single pass of the response check: it walks the few levels the
//! check interprets and skips everything else, validating what it skips.
//!
//! Skipping is where the single pass spends its time, and serde_json's `IgnoredAny` pays
//! for the generality of its visitor interface on every value. Skipping must still
//! validate: a body this scanner reads differently from the client's parser could carry
//! another patient's data past the check. So every byte is held to the grammar serde_json
//! applies when it skips a value (the multi-pass check's `IgnoredAny` and `RawValue`):
//! strings without raw control characters and with only the JSON escapes (`\u` followed by
//! four hex digits, any code unit: serde_json does not pair surrogates in values it skips),
//! numbers, literals and nesting by the JSON grammar, whitespace only where JSON allows it.
//!
//! The scanner may be stricter than serde_json, never looser: anything it does not take,
//! [`Defer`] hands to the multi-pass check, which then decides exactly as it always did.
//! Nesting deeper than [`MAX_DEPTH`] counted from the top of the body is one such case (it
//! keeps the skip in bounded memory, and serde_json refuses it anyway wherever it builds
//! values), member names with escapes where the check matches names are another.

use wide::u8x16;

/// The body is not settled by the single pass: malformed, deeper than [`MAX_DEPTH`], or
/// shaped in a way only the multi-pass check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Defer;

pub(crate) type Scanned<T> = Result<T, Defer>;

/// serde_json fails a parse at its 128th nested array or object; counted from the top of
/// the body, this never lets the single pass keep a value serde_json would refuse to build
/// (the multi-pass check builds members from the resource down, never from further up).
pub(crate) const MAX_DEPTH: usize = 127;

pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner { text, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn slice(&self, start: usize, end: usize) -> Scanned<&'a str> {
        self.text.get(start..end).ok_or(Defer)
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace, not consumed.
    pub(crate) fn peek(&mut self) -> Scanned<u8> {
        self.pos = skip_whitespace(self.bytes(), self.pos);
        self.bytes().get(self.pos).copied().ok_or(Defer)
    }

    /// Consume `byte`, after whitespace.
    pub(crate) fn eat(&mut self, byte: u8) -> Scanned<()> {
        if self.peek()? != byte {
            return Err(Defer);
        }
        self.pos += 1;
        Ok(())
    }

    /// Only whitespace up to the end of the body.
    pub(crate) fn end(&mut self) -> Scanned<()> {
        match self.peek() {
            Err(Defer) => Ok(()),
            Ok(_) => Err(Defer),
        }
    }

    /// The next member name of an object whose `{` has been consumed, its `:` consumed
    /// too; `None` once the `}` is. `first` is true until the first call has returned.
    /// Names with escapes defer: the check compares names, and serde_json would compare
    /// them unescaped.
    pub(crate) fn next_key(&mut self, first: &mut bool) -> Scanned<Option<&'a str>> {
        let bytes = self.bytes();
        let mut pos = skip_whitespace(bytes, self.pos);
        match bytes.get(pos) {
            Some(b'}') => {
                self.pos = pos + 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                pos = skip_whitespace(bytes, pos + 1);
                if bytes.get(pos) != Some(&b'"') {
                    return Err(Defer);
                }
            }
            Some(b'"') if *first => {}
            _ => return Err(Defer),
        }
        *first = false;
        let start = pos + 1;
        let end = string_stop(bytes, start).ok_or(Defer)?;
        if bytes.get(end) != Some(&b'"') {
            return Err(Defer);
        }
        // The colon usually follows the name directly.
        let mut colon = end + 1;
        if bytes.get(colon) != Some(&b':') {
            colon = skip_whitespace(bytes, colon);
            if bytes.get(colon) != Some(&b':') {
                return Err(Defer);
            }
        }
        self.pos = colon + 1;
        self.slice(start, end).map(Some)
    }

    /// Whether another element of an array whose `[` has been consumed follows; the `]`
    /// is consumed when not. `first` is true until the first call has returned.
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Scanned<bool> {
        let more = match self.peek()? {
            b']' => false,
            b',' if !*first => true,
            _ if *first => {
                *first = false;
                return Ok(true);
            }
            _ => return Err(Defer),
        };
        self.pos += 1;
        Ok(more)
    }

    /// The raw text of the next value, validated; `depth` is the number of arrays and
    /// objects around it, counted from the top of the body.
    pub(crate) fn value_text(&mut self, depth: usize) -> Scanned<&'a str> {
        self.peek()?;
        let start = self.pos;
        self.skip_value(depth)?;
        self.slice(start, self.pos)
    }

    /// Skip the next value if its text is `text`, the text of a string, array or object
    /// this scanner validated at the same depth. Such a value ends with its closing quote
    /// or bracket whatever follows, so the same bytes are the same valid value: comparing
    /// them is all the validation they need. Numbers and literals could continue past the
    /// same bytes (`1` before `12`), so they are always scanned.
    pub(crate) fn skip_repeat(&mut self, text: &str) -> Scanned<bool> {
        self.peek()?;
        let delimited = matches!(text.as_bytes().last(), Some(b'"' | b']' | b'}'));
        let repeated = delimited
            && self
                .bytes()
                .get(self.pos..)
                .is_some_and(|rest| rest.starts_with(text.as_bytes()));
        if repeated {
            self.pos += text.len();
        }
        Ok(repeated)
    }

    /// Skip the next value, validating it. Nesting is tracked in a stack of one flag per
    /// level rather than by recursion, which [`MAX_DEPTH`] bounds.
    ///
    /// This is where the single pass spends most of its time, so the position lives in a
    /// local and every step is inlined: one call per value, not one per token.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Scanned<()> {
        let room = MAX_DEPTH.checked_sub(depth).ok_or(Defer)?;
        let bytes = self.bytes();
        let mut pos = self.pos;
        // `arrays[n]` is whether the container at level `n` (counted inside this value)
        // is an array.
        let mut arrays = [false; MAX_DEPTH];
        let mut level = 0usize;
        loop {
            // A value starts here.
            pos = skip_whitespace(bytes, pos);
            match bytes.get(pos) {
                Some(b'"') => pos = string_end(bytes, pos + 1)? + 1,
                Some(&open @ (b'{' | b'[')) => {
                    if level >= room {
                        return Err(Defer);
                    }
                    let is_array = open == b'[';
                    *arrays.get_mut(level).ok_or(Defer)? = is_array;
                    level += 1;
                    pos = skip_whitespace(bytes, pos + 1);
                    let empty = match bytes.get(pos) {
                        Some(b']') => is_array,
                        Some(b'}') => !is_array,
                        _ => false,
                    };
                    if !empty {
                        if !is_array {
                            pos = member_name_end(bytes, pos)?;
                        }
                        continue;
                    }
                    pos += 1;
                    level -= 1;
                }
                Some(b'-' | b'0'..=b'9') => pos = number_end(bytes, pos)?,
                Some(b't') => pos = literal_end(bytes, pos, b"true")?,
                Some(b'f') => pos = literal_end(bytes, pos, b"false")?,
                Some(b'n') => pos = literal_end(bytes, pos, b"null")?,
                _ => return Err(Defer),
            }
            // After a value: close what ends here, then find where the next value starts.
            loop {
                let Some(top) = level.checked_sub(1) else {
                    self.pos = pos;
                    return Ok(());
                };
                let in_array = *arrays.get(top).ok_or(Defer)?;
                pos = skip_whitespace(bytes, pos);
                match bytes.get(pos) {
                    Some(b',') => {
                        pos += 1;
                        if !in_array {
                            pos = member_name_end(bytes, pos)?;
                        }
                        break;
                    }
                    Some(b']') if in_array => {}
                    Some(b'}') if !in_array => {}
                    _ => return Err(Defer),
                }
                pos += 1;
                level = top;
            }
        }
    }
}

/// The first index at or after `pos` that is not JSON whitespace.
#[inline(always)]
fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// Index of the closing quote of a string whose content starts at `pos`, its escapes and
/// bytes validated.
#[inline(always)]
fn string_end(bytes: &[u8], mut pos: usize) -> Scanned<usize> {
    loop {
        let at = string_stop(bytes, pos).ok_or(Defer)?;
        match bytes.get(at) {
            Some(b'"') => return Ok(at),
            Some(b'\\') => pos = escape_end(bytes, at + 1)?,
            // A raw control character.
            _ => return Err(Defer),
        }
    }
}

/// Just past the escape whose backslash comes before `pos`: serde_json's `ignore_escape`,
/// which takes any four hex digits after `\u` without pairing surrogates.
fn escape_end(bytes: &[u8], pos: usize) -> Scanned<usize> {
    match bytes.get(pos) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(pos + 1),
        Some(b'u') => {
            let hex = bytes.get(pos + 1..pos + 5).ok_or(Defer)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(Defer);
            }
            Ok(pos + 5)
        }
        _ => Err(Defer),
    }
}

/// Just past a member name starting at `pos` (after whitespace) and the `:` after it.
#[inline(always)]
fn member_name_end(bytes: &[u8], pos: usize) -> Scanned<usize> {
    let pos = skip_whitespace(bytes, pos);
    if bytes.get(pos) != Some(&b'"') {
        return Err(Defer);
    }
    let pos = skip_whitespace(bytes, string_end(bytes, pos + 1)? + 1);
    if bytes.get(pos) != Some(&b':') {
        return Err(Defer);
    }
    Ok(pos + 1)
}

/// Just past the number starting at `pos`:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, as serde_json skips it
/// (no range check: serde_json only checks the range of numbers it builds). What follows
/// (`01`, `1x`) is judged by the container, as in serde_json, except a digit after a
/// leading zero: not a separator either, so the same refusal.
fn number_end(bytes: &[u8], mut pos: usize) -> Scanned<usize> {
    if bytes.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match bytes.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos = digits_end(bytes, pos),
        _ => return Err(Defer),
    }
    if bytes.get(pos) == Some(&b'.') {
        pos = some_digits_end(bytes, pos + 1)?;
    }
    if let Some(b'e' | b'E') = bytes.get(pos) {
        pos += 1;
        if let Some(b'+' | b'-') = bytes.get(pos) {
            pos += 1;
        }
        pos = some_digits_end(bytes, pos)?;
    }
    Ok(pos)
}

fn digits_end(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// [`digits_end`] of at least one digit.
fn some_digits_end(bytes: &[u8], pos: usize) -> Scanned<usize> {
    let end = digits_end(bytes, pos);
    if end == pos {
        return Err(Defer);
    }
    Ok(end)
}

/// Just past `word` when it is at `pos`.
fn literal_end(bytes: &[u8], pos: usize, word: &[u8]) -> Scanned<usize> {
    let end = pos + word.len();
    if bytes.get(pos..end) != Some(word) {
        return Err(Defer);
    }
    Ok(end)
}

/// Index of the first `"`, `\` or byte below 0x20 at or after `start`: where a string ends
/// or needs a closer look. Sixteen bytes per vector compare (SSE2 on x86-64, NEON on
/// aarch64, through `wide`): most strings here (names, codes, references) end within one.
fn string_stop(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while let Some(chunk) = bytes.get(i..i + 16) {
        let Ok(chunk) = <[u8; 16]>::try_from(chunk) else {
            break;
        };
        let lanes = u8x16::new(chunk);
        let stops = lanes.simd_eq(u8x16::splat(b'"'))
            | lanes.simd_eq(u8x16::splat(b'\\'))
            | lanes.min(u8x16::splat(0x1f)).simd_eq(lanes);
        let hits = stops.to_bitmask();
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize);
        }
        i += 16;
    }
    bytes
        .get(i..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|offset| i + offset)
}

#[cfg(test)]
#[path = "json_scan_tests.rs"]
mod tests;
