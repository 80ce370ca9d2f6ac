//! A tiny JSON writer for `bench.json`.
//!
//! Hand-written rather than `serde_json`: the tool only ever writes one small
//! document of numbers and strings, and a value tree plus string escaping is a few
//! dozen lines, where serde would add derive macros and two crates to every build.

use std::fmt::Write as _;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number, written exactly.
    Int(u64),
    /// A real number; NaN and infinities become `null` (JSON has no spelling for them).
    Number(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys keep their order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn str(text: impl Into<String>) -> Json {
        Json::Str(text.into())
    }

    /// `value`, or `null` for `None`.
    pub fn number_or_null(value: Option<f64>) -> Json {
        value.map_or(Json::Null, Json::Number)
    }

    /// The document as pretty-printed text (two-space indent), ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Json::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Json::Number(value) if value.is_finite() => {
                // Rust's shortest round-trip form is valid JSON (no exponent, a `.`
                // only when needed).
                let _ = write!(out, "{value}");
            }
            Json::Number(_) => out.push_str("null"),
            Json::Str(text) => write_string(out, text),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    indent(out, depth + 1);
                    item.write(out, depth + 1);
                }
                out.push('\n');
                indent(out, depth);
                out.push(']');
            }
            Json::Object(members) if members.is_empty() => out.push_str("{}"),
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    indent(out, depth + 1);
                    write_string(out, key);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                }
                out.push('\n');
                indent(out, depth);
                out.push('}');
            }
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    out.push_str(&"  ".repeat(depth));
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document() {
        let doc = Json::object([
            ("name", Json::str("quick \"map\"\n\\")),
            ("ints", Json::Array(vec![Json::Int(1), Json::Int(u64::MAX)])),
            (
                "reals",
                Json::Array(vec![Json::Number(1.5), Json::Number(2.0)]),
            ),
            ("bad", Json::Number(f64::NAN)),
            ("none", Json::number_or_null(None)),
            ("flag", Json::Bool(true)),
            ("empty", Json::Array(vec![])),
            ("nested", Json::object([("c", Json::str("\u{1}"))])),
            ("nothing", Json::object(Vec::<(String, Json)>::new())),
        ]);
        assert_eq!(
            doc.render(),
            r#"{
  "name": "quick \"map\"\n\\",
  "ints": [
    1,
    18446744073709551615
  ],
  "reals": [
    1.5,
    2
  ],
  "bad": null,
  "none": null,
  "flag": true,
  "empty": [],
  "nested": {
    "c": "\u0001"
  },
  "nothing": {}
}
"#
        );
    }

    #[test]
    fn large_and_small_reals_have_no_exponent() {
        assert_eq!(Json::Number(1e21).render(), "1000000000000000000000\n");
        assert_eq!(Json::Number(0.000125).render(), "0.000125\n");
    }
}
