use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::*;

/// Whether the scanner takes `text` as one value and nothing else.
fn scans(text: &str) -> bool {
    let mut s = Scanner::new(text);
    s.skip_value(0).and_then(|()| s.end()).is_ok()
}

/// What serde_json decides when it skips `text` (the multi-pass check's `IgnoredAny` and
/// `RawValue`).
fn serde_skips(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

fn assert_same(text: &str) {
    assert_eq!(scans(text), serde_skips(text), "{text:?}");
}

#[test]
fn accepts_and_refuses_what_serde_json_does() {
    let accepted = [
        r#"{"a":[1,-0,0.5,-1.25e+10,2E-3,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9\uD800"]}"#,
        " [ ] ",
        "{ }",
        "\t\r\n\"\u{7f}é\"",
        r#"{"":{"":[[[]]]}}"#,
        "1e400",
    ];
    let refused = [
        "",
        "01",
        "-",
        "1.",
        ".5",
        "+1",
        "1e",
        "1e+",
        "[1,]",
        "{\"a\":1,}",
        "[,1]",
        "{,}",
        "{\"a\"}",
        "{\"a\" 1}",
        "{1:1}",
        "[1 2]",
        "[}",
        "{]",
        "\"\u{1}\"",
        "\"\n\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"abc",
        "tru",
        "nulll",
        "True",
        "[1]]",
        "\u{feff}{}",
        "\u{a0}1",
        "{\"a\":1}}",
    ];
    for text in accepted {
        assert!(scans(text), "{text:?}");
        assert_same(text);
    }
    for text in refused {
        assert!(!scans(text), "{text:?}");
        assert_same(text);
    }
}

/// Every string of up to three symbols from an alphabet of the bytes that matter to the
/// grammar, alone and in the places a value, a member name and string content occupy.
#[test]
fn agrees_with_serde_json_on_every_short_input() {
    let alphabet = [
        "\"", "\\", "u", "0", "1", "9", "a", "F", "-", "+", ".", "e", "E", "{", "}", "[", "]", ",",
        ":", " ", "\n", "\u{1}", "\u{1f}", "\u{7f}", "t", "n", "é", "/",
    ];
    let contexts: [(&str, &str); 7] = [
        ("", ""),
        ("[", "]"),
        ("{\"k\":", "}"),
        ("\"", "\""),
        ("{", ":1}"),
        ("[1,", "]"),
        ("{\"a\":1,", "}"),
    ];
    let mut inputs = vec![String::new()];
    let mut checked = 0usize;
    for _ in 0..3 {
        let mut longer = Vec::new();
        for base in &inputs {
            for symbol in alphabet {
                longer.push(format!("{base}{symbol}"));
            }
        }
        for core in &longer {
            for (before, after) in contexts {
                assert_same(&format!("{before}{core}{after}"));
                checked += 1;
            }
        }
        inputs = longer;
    }
    assert!(checked > 150_000, "{checked}");
}

#[test]
fn nesting_is_bounded_from_the_top_of_the_body() {
    let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    assert!(scans(&nested(MAX_DEPTH)));
    assert!(!scans(&nested(MAX_DEPTH + 1)));
    // serde_json builds no deeper either: a value the scanner keeps always builds.
    assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH)).is_ok());
    assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
    // Levels already open around the value count.
    let mut s = Scanner::new("[[]]");
    assert_eq!(s.skip_value(MAX_DEPTH - 2), Ok(()));
    let mut s = Scanner::new("[[]]");
    assert_eq!(s.skip_value(MAX_DEPTH - 1), Err(Defer));
    let mut s = Scanner::new("1");
    assert_eq!(s.skip_value(MAX_DEPTH + 5), Err(Defer));
    // Objects and arrays mixed, far deeper than any bit mask: refused, not misread.
    let deep = format!("{}1{}", "{\"a\":[".repeat(200), "]}".repeat(200));
    assert!(!scans(&deep));
}

#[test]
fn member_names_and_elements_follow_the_grammar() {
    let mut s = Scanner::new(r#"{"a" : 1 , "b":[2, 3]}"#);
    s.eat(b'{').unwrap();
    let mut first = true;
    assert_eq!(s.next_key(&mut first), Ok(Some("a")));
    s.skip_value(1).unwrap();
    assert_eq!(s.next_key(&mut first), Ok(Some("b")));
    s.eat(b'[').unwrap();
    let mut first_element = true;
    let mut elements = 0;
    while s.next_element(&mut first_element).unwrap() {
        s.skip_value(2).unwrap();
        elements += 1;
    }
    assert_eq!(elements, 2);
    assert_eq!(s.next_key(&mut first), Ok(None));
    assert_eq!(s.end(), Ok(()));
    // Escaped names are not compared, so not taken; nor are names with control bytes.
    for object in [
        r#"{"a\u0062":1}"#,
        "{\"a\u{1}\":1}",
        "{\"a\":1,}",
        "{,\"a\":1}",
    ] {
        let mut s = Scanner::new(object);
        s.eat(b'{').unwrap();
        let mut first = true;
        let read = (|| -> Scanned<()> {
            while s.next_key(&mut first)?.is_some() {
                s.skip_value(1)?;
            }
            Ok(())
        })();
        assert_eq!(read, Err(Defer), "{object}");
    }
    for array in ["[1,]", "[,1]", "[1 2]"] {
        let mut s = Scanner::new(array);
        s.eat(b'[').unwrap();
        let mut first = true;
        let read = (|| -> Scanned<()> {
            while s.next_element(&mut first)? {
                s.skip_value(1)?;
            }
            Ok(())
        })();
        assert_eq!(read, Err(Defer), "{array}");
    }
}

#[test]
fn a_repeat_is_only_taken_for_the_same_delimited_text() {
    let mut s = Scanner::new(r#"{"reference":"Patient/p1"}, "x""#);
    assert_eq!(s.skip_repeat(r#"{"reference":"Patient/p1"}"#), Ok(true));
    assert_eq!(s.peek(), Ok(b','));
    // A number could go on past the same bytes: scanned, never assumed.
    let mut s = Scanner::new("12");
    assert_eq!(s.skip_repeat("1"), Ok(false));
    assert_eq!(s.pos(), 0);
    let mut s = Scanner::new(r#"{"reference":"Patient/p2"}"#);
    assert_eq!(s.skip_repeat(r#"{"reference":"Patient/p1"}"#), Ok(false));
    assert_eq!(s.pos(), 0);
}

#[test]
fn the_string_search_finds_the_first_stop_in_and_after_every_word() {
    for len in 0..40 {
        for at in 0..len {
            for stop in [b'"', b'\\', 0x00, 0x1f] {
                let mut bytes = vec![b'a'; len];
                // Bytes next to the stop that the word test must not mistake for one.
                if at > 0 {
                    bytes[at - 1] = 0x20;
                }
                if at + 1 < len {
                    bytes[at + 1] = 0x80;
                }
                bytes[at] = stop;
                assert_eq!(string_stop(&bytes, 0), Some(at), "{bytes:?}");
            }
        }
        let plain: Vec<u8> = (0..len)
            .map(|i| [b'a', 0x20, 0x7f, 0xc3, 0xff][i % 5])
            .collect();
        assert_eq!(string_stop(&plain, 0), None);
    }
}

fn json_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z\"\\\\/\u{0}-\u{1f}é\u{10348}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z\"\\\\]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Byte-level damage of the kinds that make a scanner and a parser part ways.
fn mutation_strategy() -> impl Strategy<Value = (usize, u8, &'static [u8])> {
    let bytes: &'static [&'static [u8]] = &[
        b"\"",
        b"\\",
        b"\\u",
        b"\\uZZ",
        b"\\ud800",
        b"\x01",
        b"\x1f",
        b"\n",
        b" ",
        b"-",
        b"0",
        b"1.",
        b"e",
        b"+",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"tru",
        b"nul",
        b"\"a\":1,",
    ];
    (any::<usize>(), 0u8..4, proptest::sample::select(bytes))
}

fn damage(text: &str, (at, kind, bytes): (usize, u8, &[u8])) -> Option<String> {
    let mut body = text.as_bytes().to_vec();
    let i = at % (body.len() + 1);
    match kind {
        0 => body.truncate(i),
        1 if i < body.len() => {
            body.remove(i);
        }
        2 if i < body.len() => body[i] = bytes[0],
        _ => {
            body.splice(i..i, bytes.iter().copied());
        }
    }
    String::from_utf8(body).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_serde_json_on_damaged_documents(
        value in json_strategy(),
        pretty in any::<bool>(),
        mutations in proptest::collection::vec(mutation_strategy(), 0..3),
    ) {
        let mut text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        prop_assert!(scans(&text), "{}", text);
        for m in mutations {
            if let Some(damaged) = damage(&text, m) {
                text = damaged;
            }
            prop_assert_eq!(scans(&text), serde_skips(&text), "{:?}", text);
        }
    }
}
