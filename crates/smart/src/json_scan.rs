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
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Ok(b);
            }
            self.pos += 1;
        }
        Err(Defer)
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
        match self.peek()? {
            b'}' => {
                self.pos += 1;
                return Ok(None);
            }
            b',' if !*first => {
                self.pos += 1;
                self.eat(b'"')?;
            }
            b'"' if *first => self.pos += 1,
            _ => return Err(Defer),
        }
        *first = false;
        let start = self.pos;
        let end = string_stop(self.bytes(), start).ok_or(Defer)?;
        if self.bytes().get(end) != Some(&b'"') {
            return Err(Defer);
        }
        // The colon usually follows the name directly.
        if self.bytes().get(end + 1) == Some(&b':') {
            self.pos = end + 2;
        } else {
            self.pos = end + 1;
            self.eat(b':')?;
        }
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

    /// Skip the next value, validating it. Nesting is tracked in a bit per level rather
    /// than by recursion, which [`MAX_DEPTH`] keeps within one `u128`.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Scanned<()> {
        let room = MAX_DEPTH.checked_sub(depth).ok_or(Defer)?;
        // Bit `n` is set when the container at level `n` (counted inside this value) is
        // an array.
        let mut arrays: u128 = 0;
        let mut level = 0usize;
        loop {
            // A value starts here.
            let opened = match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    self.skip_string()?;
                    None
                }
                b'{' => Some(false),
                b'[' => Some(true),
                b'-' | b'0'..=b'9' => {
                    self.skip_number()?;
                    None
                }
                b't' => {
                    self.literal(b"true")?;
                    None
                }
                b'f' => {
                    self.literal(b"false")?;
                    None
                }
                b'n' => {
                    self.literal(b"null")?;
                    None
                }
                _ => return Err(Defer),
            };
            let mut empty_check = false;
            if let Some(is_array) = opened {
                if level >= room {
                    return Err(Defer);
                }
                self.pos += 1;
                arrays = (arrays & !(1 << level)) | (u128::from(is_array) << level);
                level += 1;
                empty_check = true;
            }
            // After a value, or just inside a container: close what ends here, then find
            // where the next value starts.
            loop {
                let Some(top) = level.checked_sub(1) else {
                    return Ok(());
                };
                let in_array = arrays >> top & 1 == 1;
                let next = self.peek()?;
                match next {
                    b']' if in_array => {}
                    b'}' if !in_array => {}
                    b',' if !empty_check => {
                        self.pos += 1;
                        if !in_array {
                            self.member_name()?;
                        }
                        break;
                    }
                    _ if empty_check => {
                        if !in_array {
                            self.member_name()?;
                        }
                        break;
                    }
                    _ => return Err(Defer),
                }
                self.pos += 1;
                level = top;
                empty_check = false;
            }
        }
    }

    /// A member name inside a skipped object, up to and including its `:`.
    fn member_name(&mut self) -> Scanned<()> {
        self.eat(b'"')?;
        self.skip_string()?;
        self.eat(b':')
    }

    /// Skip a string whose opening quote has been consumed.
    fn skip_string(&mut self) -> Scanned<()> {
        let bytes = self.bytes();
        loop {
            let at = string_stop(bytes, self.pos).ok_or(Defer)?;
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos = at + 1;
                    self.skip_escape()?;
                }
                // A raw control character.
                _ => return Err(Defer),
            }
        }
    }

    /// The escape after a backslash: serde_json's `ignore_escape`, which takes any four
    /// hex digits after `\u` without pairing surrogates.
    fn skip_escape(&mut self) -> Scanned<()> {
        let bytes = self.bytes();
        match bytes.get(self.pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                let hex = bytes.get(self.pos + 1..self.pos + 5).ok_or(Defer)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Defer);
                }
                self.pos += 5;
            }
            _ => return Err(Defer),
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, as serde_json skips it
    /// (no range check: serde_json only checks the range of numbers it builds).
    fn skip_number(&mut self) -> Scanned<()> {
        if self.byte() == Some(b'-') {
            self.pos += 1;
        }
        match self.byte() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Defer),
        }
        if self.byte() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if matches!(self.byte(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.byte(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        // What follows (`01`, `1x`) is judged by the container, as in serde_json, except
        // a digit after a leading zero: not a separator either, so the same refusal.
        Ok(())
    }

    fn byte(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn digits(&mut self) {
        while matches!(self.byte(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Scanned<()> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(Defer);
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        let end = self.pos + word.len();
        if self.bytes().get(self.pos..end) != Some(word) {
            return Err(Defer);
        }
        self.pos = end;
        Ok(())
    }
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
