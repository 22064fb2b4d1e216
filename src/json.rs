//! JSON as Go's `encoding/json` writes it, which is what etcd's clients have always read: the
//! same as serde_json's compact output, except that `<`, `>`, `&` and the line and paragraph
//! separators U+2028 and U+2029 are escaped (`\u003c` and so on), so that a key or value holding
//! them comes out byte for byte as etcd sends it.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// A value as Go's `json.Marshal` would write it.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value
        .serialize(&mut serializer)
        .expect("a value made of strings and numbers always serialises");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..at])?;
            writer.write_all(escape.as_bytes())?;
            start = at + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_characters_and_separators_are_escaped_as_go_does() {
        assert_eq!(
            to_string("<a href=\"x\">&</a>\u{2028}\u{2029}é\n"),
            r#""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e\u2028\u2029é\n""#
        );
        assert_eq!(
            to_string(&serde_json::json!({"k": [1, "v"]})),
            r#"{"k":[1,"v"]}"#
        );
    }
}
