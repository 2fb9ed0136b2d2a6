//! The common case of [`parse_message`](super::parse_message) without serde:
//! one object whose members are only `jsonrpc`, `id`, `method` and `params`,
//! each at most once, with `"jsonrpc":"2.0"`, a string `method`, an `id`
//! that is `null`, an integer or a string, and no escapes in any of those
//! strings. Such a frame is read here in one short scan of its bytes.
//!
//! Anything else (a batch, an escape, another member, a number id with a
//! fraction, an error of any kind) gives `None`, and the full parser decides;
//! so this path only ever returns what the full parser would return for the
//! same bytes (the tests below compare the two on many frames).

use serde_json::value::RawValue;

use super::{Envelope, params_value, too_deep};
use portcullis_protocol::RequestId;

/// The frame as a valid request or notification, when it has the common
/// shape; `None` sends it to the full parser.
pub(super) fn parse(bytes: &[u8]) -> Option<Envelope> {
    let mut scan = Scan { bytes, pos: 0 };
    scan.skip_ws();
    scan.expect(b'{')?;
    let (mut jsonrpc, mut id, mut method, mut params) = (false, None, None, None);
    loop {
        scan.skip_ws();
        let name = scan.plain_string()?;
        scan.skip_ws();
        scan.expect(b':')?;
        scan.skip_ws();
        match name {
            b"jsonrpc" if !jsonrpc => {
                if scan.plain_string()? != b"2.0" {
                    return None;
                }
                jsonrpc = true;
            }
            b"id" if id.is_none() => id = Some(scan.id()?),
            b"method" if method.is_none() => method = Some(scan.plain_str()?),
            b"params" if params.is_none() => params = Some(scan.raw_value()?),
            _ => return None,
        }
        scan.skip_ws();
        match scan.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    scan.skip_ws();
    if scan.pos != bytes.len() || !jsonrpc {
        return None;
    }
    let method = method?.to_owned();
    let (params, params_raw, duplicate_param) = match params {
        None => (serde_json::Value::Null, None, None),
        Some(raw) => {
            // The same steps as the full parser's `into_envelope`.
            if too_deep(bytes) {
                return None;
            }
            let (value, duplicate) = params_value(raw)?;
            (value, Some(raw.to_owned()), duplicate)
        }
    };
    Some(Envelope { id, method, params, params_raw, duplicate_param })
}

struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON whitespace (RFC 8259 §2).
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// A string with no escape and no control character: its bytes
    /// between the quotes (not yet checked as UTF-8).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.pos;
        // Names and values here are short: a plain loop beats a SIMD search.
        let len = self.bytes[start..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        let body = &self.bytes[start..start + len];
        self.pos = start + len + 1;
        Some(body)
    }

    /// [`plain_string`](Self::plain_string) as valid UTF-8.
    fn plain_str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.plain_string()?).ok()
    }

    /// `null`, a plain string, or an integer in the signed 64-bit range
    /// written as JSON allows (no leading zero, no fraction, no exponent).
    fn id(&mut self) -> Option<RequestId> {
        match *self.bytes.get(self.pos)? {
            b'"' => Some(RequestId::String(self.plain_str()?.to_owned())),
            b'n' => {
                let rest = self.bytes.get(self.pos..self.pos + 4)?;
                (rest == b"null").then(|| {
                    self.pos += 4;
                    RequestId::Null
                })
            }
            _ => {
                let start = self.pos;
                if self.bytes[self.pos] == b'-' {
                    self.pos += 1;
                }
                let digits = self.pos;
                while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                let n = self.pos - digits;
                if n == 0 || (n > 1 && self.bytes[digits] == b'0') {
                    return None;
                }
                if matches!(self.bytes.get(self.pos), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
                text.parse().ok().map(RequestId::Number)
            }
        }
    }

    /// One JSON value starting here (after whitespace), read and checked by
    /// serde_json; `None` when it is not valid JSON or the rest of the frame
    /// is not UTF-8 (the full parser then decides).
    fn raw_value(&mut self) -> Option<&'a RawValue> {
        let rest = std::str::from_utf8(&self.bytes[self.pos..]).ok()?;
        let mut deserializer = serde_json::Deserializer::from_str(rest);
        let raw: &'a RawValue = serde::Deserialize::deserialize(&mut deserializer).ok()?;
        // The value is a slice of `rest`: continue right after it.
        let end = raw.get().as_ptr() as usize - rest.as_ptr() as usize + raw.get().len();
        self.pos += end;
        Some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ParsedMessage, parse_full};
    use super::*;

    /// The fast path either declines or agrees with the full parser.
    fn agrees(frame: &str) -> bool {
        let fast = parse(frame.as_bytes());
        let full = parse_full(frame.as_bytes());
        match fast {
            None => false,
            Some(env) => {
                assert_eq!(ParsedMessage::Single(Ok(env)), full, "frame {frame}");
                true
            }
        }
    }

    #[test]
    fn common_frames_take_the_fast_path() {
        for frame in [
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":0,"method":"ping","params":{}}"#,
            r#" { "method" : "ping" , "id" : -12 , "jsonrpc" : "2.0" } "#,
            "{\"jsonrpc\":\"2.0\",\t\"id\":\"a b\",\"method\":\"ping\"}\r",
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"note"}"#,
            r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"p"}"#,
            r#"{"jsonrpc":"2.0","id":-0,"method":"p"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"save","params":{"data":{"a":[1,{"b":"}]"}],"n":1e400},"x":"\"{"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"token":"bad","token":"live"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":[1,2] }"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":"s"}"#,
            r#"{"jsonrpc":"2.0","id":1,"params":5 ,"method":"a"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"é","params":{"k":"ü"}}"#,
        ] {
            assert!(agrees(frame), "declined {frame}");
        }
    }

    #[test]
    fn anything_else_goes_to_the_full_parser() {
        for frame in [
            r#"[{"jsonrpc":"2.0","id":7,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","extra":1}"#,
            r#"{"jsonrpc":"2.0","id":7,"id":8,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"a","method":"b"}"#,
            r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
            r#"{"id":7,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":7}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":01,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":-,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":nul,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a\"b","method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"p\u0069ng"}"#,
            r#"{"jsonr\u0070c":"2.0","id":7,"method":"ping"}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":\"a\u{1}\",\"method\":\"ping\"}",
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"} x"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping",}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping""#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":1}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":tru}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":"\x"}}"#,
            "{}",
            "",
            "42",
        ] {
            assert!(!agrees(frame), "took the fast path: {frame}");
        }
        let invalid_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}";
        assert!(parse(invalid_utf8).is_none());
        let invalid_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"params\":{\"\xff\":1}}";
        assert!(parse(invalid_utf8).is_none());
        let deep =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":{}1{}}}"#, "[".repeat(127), "]".repeat(127));
        assert!(parse(deep.as_bytes()).is_none());
        assert_eq!(parse_full(deep.as_bytes()), super::super::parse_message(deep.as_bytes()));
    }

    /// Frames built from pieces, each chosen from valid and invalid
    /// variants, in every member order: wherever the fast path answers, the
    /// full parser gives the same envelope.
    #[test]
    fn random_frames_agree_with_the_full_parser() {
        let ids = [
            "1",
            "-0",
            "0",
            "00",
            "12345678901234567890",
            "-9223372036854775809",
            "\"x\"",
            "\"\\n\"",
            "null",
            "1.5",
            "[]",
        ];
        let methods = ["\"ping\"", "\"p\\\"\"", "\"\"", "7", "\"a b\""];
        let params = ["", "{}", "{\"a\":1,\"a\":2}", "[ ]", "{\"s\":\"]}\\\"\"}", "{\"a\":[}", "1", "{\"n\":-0.0e+5}"];
        let versions = ["\"2.0\"", "\"2.00\"", "2.0"];
        let spaces = ["", " ", "\t\r\n "];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut pick = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut fast = 0;
        for _ in 0..20_000 {
            let ws = spaces[pick(spaces.len())];
            let mut members = vec![
                format!("\"jsonrpc\"{ws}:{}", versions[pick(versions.len())]),
                format!("\"id\":{ws}{}", ids[pick(ids.len())]),
                format!("\"method\":{}{ws}", methods[pick(methods.len())]),
            ];
            let p = params[pick(params.len())];
            if !p.is_empty() {
                members.push(format!("{ws}\"params\"{ws}:{ws}{p}{ws}"));
            }
            for i in (1..members.len()).rev() {
                members.swap(i, pick(i + 1));
            }
            if pick(4) == 0 {
                members.pop();
            }
            let frame = format!("{ws}{{{}}}{ws}", members.join(","));
            if agrees(&frame) {
                fast += 1;
            }
        }
        assert!(fast > 1_000, "the fast path took only {fast} frames");
    }
}
