//! Finding where a key sits in the YAML text, so that errors found after parsing (a bad URL,
//! a duration without a unit) still point at file:line:column.
//!
//! This reads block-style YAML line by line, tracking indentation; keys in flow style
//! (`{a: 1}`) are not found and their errors are reported without a position.

/// 1-based line and column of the value of `path` (e.g. `["upstream", "url"]`), or of the key
/// when the value is on the following lines.
pub fn locate(source: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut stack: Vec<(usize, &str)> = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue;
        }
        let key = key.trim().trim_matches(['"', '\'']);
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        if stack.len() == path.len() && stack.iter().map(|(_, k)| *k).eq(path.iter().copied()) {
            let value_offset = rest.len() - rest.trim_start().len();
            let column = if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                indent + 1
            } else {
                indent + key_len(trimmed) + 1 + value_offset + 1
            };
            return Some((index + 1, column));
        }
    }
    None
}

/// Length of the key as written, quotes included, up to the colon.
fn key_len(trimmed: &str) -> usize {
    trimmed.find(':').unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::locate;

    const YAML: &str = "# comment\nlisten: 127.0.0.1:8080\nupstream:\n  # nested\n  url: http://x\n  connect_timeout: 5s\nlimits:\n  url: other\n";

    #[test]
    fn finds_nested_values() {
        assert_eq!(locate(YAML, &["listen"]), Some((2, 9)));
        assert_eq!(locate(YAML, &["upstream", "url"]), Some((5, 8)));
        assert_eq!(
            locate(YAML, &["upstream", "connect_timeout"]),
            Some((6, 20))
        );
        assert_eq!(locate(YAML, &["limits", "url"]), Some((8, 8)));
        assert_eq!(locate(YAML, &["upstream"]), Some((3, 1)));
        assert_eq!(locate(YAML, &["shutdown"]), None);
    }
}
