//! Parsing search values: comma lists, prefixes, tokens, numbers.

/// R4 search prefixes (http://hl7.org/fhir/R4/search.html#prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// Split a leading prefix off a date/number/quantity value.
pub fn split_prefix(value: &str) -> (Prefix, &str) {
    let table = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (p, prefix) in table {
        if let Some(rest) = value.strip_prefix(p)
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, value)
}

/// Split a comma list, honouring `\,` escapes.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => cur.push(n),
                None => cur.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `system|code`, `|code`, `system|` or `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `None`: any system; `Some("")`: no system.
    pub system: Option<String>,
    /// `None`: any code (the `system|` form).
    pub code: Option<String>,
}

pub fn parse_token(value: &str) -> Token {
    match value.split_once('|') {
        Some((s, c)) => Token {
            system: Some(s.to_owned()),
            code: (!c.is_empty()).then(|| c.to_owned()),
        },
        None => Token {
            system: None,
            code: Some(value.to_owned()),
        },
    }
}

/// A number with the range its written precision implies: `100` is [99.5, 100.5).
pub fn parse_number(text: &str) -> Option<(f64, f64, f64)> {
    let v: f64 = text.trim().parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    let decimals = text.split_once('.').map_or(0, |(_, f)| {
        f.chars().take_while(char::is_ascii_digit).count()
    });
    let half = 0.5 * 10f64.powi(-i32::try_from(decimals).unwrap_or(0));
    Some((v, v - half, v + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_only_before_numbers() {
        assert_eq!(split_prefix("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(split_prefix("2020"), (Prefix::Eq, "2020"));
        assert_eq!(split_prefix("ap5.4"), (Prefix::Ap, "5.4"));
    }

    #[test]
    fn lists_split_on_unescaped_commas() {
        assert_eq!(
            split_list(r"a,b\,c"),
            vec!["a".to_owned(), "b,c".to_owned()]
        );
    }

    #[test]
    fn tokens() {
        assert_eq!(
            parse_token("s|c"),
            Token {
                system: Some("s".into()),
                code: Some("c".into())
            }
        );
        assert_eq!(
            parse_token("|c"),
            Token {
                system: Some(String::new()),
                code: Some("c".into())
            }
        );
        assert_eq!(
            parse_token("s|"),
            Token {
                system: Some("s".into()),
                code: None
            }
        );
        assert_eq!(
            parse_token("c"),
            Token {
                system: None,
                code: Some("c".into())
            }
        );
    }

    #[test]
    fn number_precision() {
        let (_, lo, hi) = parse_number("100").unwrap();
        assert!((lo - 99.5).abs() < 1e-9 && (hi - 100.5).abs() < 1e-9);
        let (_, lo, _) = parse_number("5.40").unwrap();
        assert!((lo - 5.395).abs() < 1e-9);
    }
}
