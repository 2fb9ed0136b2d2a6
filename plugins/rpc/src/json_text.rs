//! JSON kept as text: compacting a value without touching how its numbers
//! and strings are written (docs/protocol.md §4: user data round-trips
//! exactly, and its size is measured as compact JSON).

use serde_json::value::RawValue;

/// A JSON value with the whitespace between tokens removed and everything
/// else (numbers, string escapes, member order) exactly as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactJson {
    /// The compacted text.
    pub text: String,
    /// Bytes serde_json's compact writer would print for this value: string
    /// escapes it would not write (`\u00e9`, `\/`) count as the UTF-8 they
    /// stand for. Numbers count as written.
    pub serde_len: usize,
}

/// Compacts `raw` (valid JSON, as every `RawValue` is).
///
/// # Examples
///
/// ```
/// use portcullis_rpc::compact_json;
/// use serde_json::value::RawValue;
///
/// let raw = RawValue::from_string(r#"{ "n": 1e400, "s": "\u00e9 x" }"#.to_owned()).unwrap();
/// let compact = compact_json(&raw);
/// assert_eq!(compact.text, r#"{"n":1e400,"s":"\u00e9 x"}"#);
/// assert_eq!(compact.serde_len, r#"{"n":1e400,"s":"é x"}"#.len());
/// ```
pub fn compact_json(raw: &RawValue) -> CompactJson {
    let bytes = raw.get().as_bytes();
    let mut text = Vec::with_capacity(bytes.len());
    let mut serde_len = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            let end = string_end(bytes, i);
            serde_len += serde_string_len(&bytes[i..end]);
            text.extend_from_slice(&bytes[i..end]);
            i = end;
            continue;
        }
        if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            text.push(b);
            serde_len += 1;
        }
        i += 1;
    }
    // Only whitespace outside strings was removed: still valid UTF-8.
    let text = String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    CompactJson { text, serde_len }
}

/// The index just past the string that starts with the quote at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Bytes serde_json prints for the string literal `lit` (quotes included).
fn serde_string_len(lit: &[u8]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < lit.len() {
        if lit[i] != b'\\' || i + 1 >= lit.len() {
            len += 1;
            i += 1;
            continue;
        }
        match lit[i + 1] {
            b'u' => {
                let code = hex4(lit, i + 2);
                i += 6;
                len += match code {
                    Some(0x08 | 0x0C | 0x0A | 0x0D | 0x09 | 0x22 | 0x5C) => 2,
                    Some(c) if c < 0x20 => 6,
                    Some(c) if (0xD800..0xDC00).contains(&c) && lit.get(i) == Some(&b'\\') => {
                        // A surrogate pair: one 4-byte character.
                        match hex4(lit, i + 2) {
                            Some(low) if (0xDC00..0xE000).contains(&low) => {
                                i += 6;
                                4
                            }
                            _ => 3,
                        }
                    }
                    Some(c) => char::from_u32(c).map_or(3, char::len_utf8),
                    None => 6,
                };
            }
            b'/' => {
                len += 1;
                i += 2;
            }
            _ => {
                len += 2;
                i += 2;
            }
        }
    }
    len
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(text: &str) -> CompactJson {
        compact_json(&RawValue::from_string(text.to_owned()).expect("valid JSON"))
    }

    #[test]
    fn keeps_numbers_and_strings_as_written() {
        let c = compact("{ \"a\" : [ 18446744073709551617 , -0, 1E+2 ],\n\t\"s\": \"a b\\n\" }");
        assert_eq!(c.text, r#"{"a":[18446744073709551617,-0,1E+2],"s":"a b\n"}"#);
        assert_eq!(c.serde_len, c.text.len());
    }

    #[test]
    fn measures_like_serde_json_compact_writer() {
        for text in [
            r#"{"s":"\u00e9\/\"\\\u0001\u000a\ud83d\ude00 é"}"#,
            r#"{"k\u0041":{"x":[true,false,null,"\t"]}}"#,
            r#"{"a":"\u2028\u0000"}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).expect("valid");
            let expected = serde_json::to_string(&value).expect("serializes").len();
            assert_eq!(compact(text).serde_len, expected, "{text}");
        }
    }
}
