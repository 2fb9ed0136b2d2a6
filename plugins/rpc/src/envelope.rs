//! Parsing and validating one frame as a JSON-RPC 2.0 message (docs/protocol.md §1–2).

use std::borrow::Cow;

use portcullis_protocol::{ErrorCode, RequestId, RpcError};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

mod fast;

/// A valid JSON-RPC request or notification.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `Some` for a request (even `"id": null`), `None` for a notification.
    pub id: Option<RequestId>,
    /// The method name.
    pub method: String,
    /// `params` as sent: absent becomes `Value::Null`; its type is checked
    /// later, after the method and gate checks (docs/protocol.md §3 order).
    /// When `params` is not an object its content is not kept: an array
    /// stands as `[]`, any other value as `false` (either is `-32602`).
    pub params: Value,
    /// `params` exactly as written (`None` when absent), so that typed
    /// params can keep raw JSON (`Box<RawValue>`) with every number as
    /// written (docs/protocol.md §4, user data round-trips exactly).
    pub params_raw: Option<Box<RawValue>>,
    /// The first member name that appears twice at the top level of
    /// `params`: such params are `-32602` naming it (docs/protocol.md §2).
    pub duplicate_param: Option<String>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.method == other.method
            && self.params == other.params
            && self.params_raw.as_deref().map(RawValue::get) == other.params_raw.as_deref().map(RawValue::get)
            && self.duplicate_param == other.duplicate_param
    }
}

/// A frame that is not a valid request: answered with this error and `id`,
/// and counted as a protocol error.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The id to answer with (`Null` when the frame had no valid id).
    pub id: RequestId,
    /// `-32700` or `-32600`.
    pub error: RpcError,
}

/// One frame, parsed (docs/protocol.md §2).
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedMessage {
    /// A single request or notification, or why it is not one.
    Single(Result<Envelope, Invalid>),
    /// A batch (the frame is a JSON array): each member parsed on its own,
    /// in array order. May be empty; the caller applies `max_batch`.
    Batch(Vec<Result<Envelope, Invalid>>),
}

/// Parses one frame (docs/protocol.md §1–2):
/// - invalid UTF-8 or JSON, or nesting 128 deep or more: `-32700`, id `null`;
/// - a JSON array: a batch, each member judged as below;
/// - not an object, a member name twice in the object, a bad `id`,
///   `jsonrpc` not `"2.0"`, `method` not a string: `-32600`, with the id
///   when it was valid.
///
/// One pass over the bytes; numbers keep the digits they were written with.
/// A frame of the common shape (one object with only the four JSON-RPC
/// members, no escapes in them) is read by a short byte scan instead of
/// serde, with the same result.
pub fn parse_message(bytes: &[u8]) -> ParsedMessage {
    match fast::parse(bytes) {
        Some(envelope) => ParsedMessage::Single(Ok(envelope)),
        None => parse_full(bytes),
    }
}

/// [`parse_message`] through serde for every frame.
fn parse_full(bytes: &[u8]) -> ParsedMessage {
    if too_deep(bytes) {
        return ParsedMessage::Single(Err(parse_error()));
    }
    // UTF-8 is checked once for the whole frame (also inside the members
    // that are read and dropped), so the parser need not check each string.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return ParsedMessage::Single(Err(parse_error()));
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = serde::Deserializer::deserialize_any(&mut deserializer, FrameVisitor).and_then(|frame| {
        deserializer.end()?;
        Ok(frame)
    });
    match parsed {
        Ok(Frame::Single(object)) => ParsedMessage::Single(object.into_envelope()),
        Ok(Frame::Batch(members)) => ParsedMessage::Batch(members.into_iter().map(Object::into_envelope).collect()),
        Err(_) => ParsedMessage::Single(Err(parse_error())),
    }
}

fn parse_error() -> Invalid {
    Invalid { id: RequestId::Null, error: RpcError::with_message(ErrorCode::ParseError, "parse error") }
}

/// Arrays and objects nested 128 or more deep anywhere in the frame
/// (docs/protocol.md §1: `-32700`). Checked once over the bytes, so that
/// every later parse of a part of the frame stays within serde_json's
/// own limit. Brackets inside strings do not count.
fn too_deep(bytes: &[u8]) -> bool {
    const LIMIT: usize = 128;
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= LIMIT {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses one frame that must be a single request (a batch is `-32600`).
pub fn parse_frame(bytes: &[u8]) -> Result<Envelope, Invalid> {
    match parse_message(bytes) {
        ParsedMessage::Single(result) => result,
        ParsedMessage::Batch(_) => Err(invalid_request(RequestId::Null, "batch not allowed here")),
    }
}

fn invalid_request(id: RequestId, message: &str) -> Invalid {
    Invalid { id, error: RpcError::with_message(ErrorCode::InvalidRequest, message) }
}

/// The key serde_json's `arbitrary_precision` numbers arrive under when a
/// visitor is asked for "any" value (a number looks like a one-entry map).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// What one JSON value of a frame (or of a batch) was, before the JSON-RPC
/// rules are applied. Read in one pass without building `Value`s for the
/// members JSON-RPC itself reads: member names and string values borrow
/// from the frame where they have no escapes.
enum Object<'de> {
    /// Not a JSON object.
    NotObject,
    /// An object: the members JSON-RPC reads, and whether a name repeated.
    Request {
        /// `jsonrpc`: whether it is the string `"2.0"`.
        jsonrpc: Option<bool>,
        /// `id`: a valid id, or `Err` for any other value.
        id: Option<Result<RequestId, ()>>,
        /// `method`: the string, or `None` for any other value.
        method: Option<Option<Cow<'de, str>>>,
        params: Option<Box<RawValue>>,
        /// Some member name repeated.
        duplicate: bool,
        /// `id` itself repeated.
        duplicate_id: bool,
    },
}

enum Frame<'de> {
    Single(Object<'de>),
    Batch(Vec<Object<'de>>),
}

/// `params` as read in the same pass: an object (with its first repeated
/// top-level name), `null`, or something else.
enum Params {
    Object(serde_json::Map<String, Value>, Option<String>),
    Null,
    Array,
    Scalar,
}

impl Object<'_> {
    fn into_envelope(self) -> Result<Envelope, Invalid> {
        let Object::Request { jsonrpc, id, method, params, duplicate, duplicate_id } = self else {
            return Err(invalid_request(RequestId::Null, "not a request object"));
        };
        let id = match id {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(())) => return Err(invalid_request(RequestId::Null, "invalid id")),
        };
        // A repeated `id` makes the id unknowable: answer with null.
        let answer_id = id.clone().filter(|_| !duplicate_id).unwrap_or(RequestId::Null);
        if duplicate {
            return Err(invalid_request(answer_id, "duplicate member name"));
        }
        if jsonrpc != Some(true) {
            return Err(invalid_request(answer_id, "jsonrpc must be \"2.0\""));
        }
        let method = match method {
            Some(Some(method)) => method.into_owned(),
            _ => return Err(invalid_request(answer_id, "method must be a string")),
        };
        let (value, duplicate_param) = match &params {
            None => (Value::Null, None),
            // Valid JSON within the depth limit already: this parse cannot fail.
            Some(raw) => params_value(raw).ok_or_else(parse_error)?,
        };
        Ok(Envelope { id, method, params: value, params_raw: params, duplicate_param })
    }
}

/// `params` as the methods see it (see [`Envelope::params`]) and its first
/// repeated top-level name; `None` when `raw` does not parse.
fn params_value(raw: &RawValue) -> Option<(Value, Option<String>)> {
    let parsed = ParamsSeed.deserialize(&mut serde_json::Deserializer::from_str(raw.get())).ok()?;
    Some(match parsed {
        Params::Null => (Value::Null, None),
        Params::Object(map, duplicate) => (Value::Object(map), duplicate),
        Params::Array => (Value::Array(Vec::new()), None),
        Params::Scalar => (Value::Bool(false), None),
    })
}

/// Member names seen so far in one object: a short list, a set past 8
/// names (so a hostile object with many members costs linear time).
#[derive(Default)]
struct SeenNames<'de> {
    few: Vec<Cow<'de, str>>,
    many: std::collections::HashSet<Cow<'de, str>>,
}

impl<'de> SeenNames<'de> {
    /// Records `name`; false when it was already there.
    fn insert(&mut self, name: Cow<'de, str>) -> bool {
        if !self.many.is_empty() {
            return self.many.insert(name);
        }
        if self.few.contains(&name) {
            return false;
        }
        self.few.push(name);
        if self.few.len() > 8 {
            self.many.extend(self.few.drain(..));
        }
        true
    }
}

/// A member name or string value, borrowed from the frame when it has no
/// escapes (serde's own `Cow<str>` always copies).
struct Text<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

/// Reads any value: `Some` for a string, `None` (the value read in full and
/// dropped) for anything else. `jsonrpc` and `method` need nothing more.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads `id` (docs/protocol.md §2): `null`, a string, or an integer written
/// without fraction or exponent in the signed 64-bit range; `Err` for any
/// other value (read in full and dropped). The same rule as
/// [`RequestId::from_value`], without building a `Value`.
struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = Result<RequestId, ()>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl IdVisitor {
    /// A number as written (`arbitrary_precision` hands over its text).
    fn number(text: &str) -> Result<RequestId, ()> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        text.parse().map(RequestId::Number).map_err(drop)
    }
}

impl<'de> Visitor<'de> for IdVisitor {
    type Value = Result<RequestId, ()>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC id")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Ok(RequestId::Null))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(RequestId::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(RequestId::String(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(RequestId::Number(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map(RequestId::Number).map_err(drop))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut first = true;
        let mut id = Err(());
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            if std::mem::take(&mut first) && name == NUMBER_TOKEN {
                let Text(text) = map.next_value::<Text<'de>>()?;
                id = Self::number(&text);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(id)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(()))
    }
}

/// The `visit_*` methods of a visitor for the JSON scalars it does not
/// look inside: each gives `$value`. (`no_unit`: the visitor reads `null` itself.)
macro_rules! not_an_object {
    ($ty:ty, $value:expr) => {
        not_an_object!($ty, $value, no_unit);
        fn visit_unit<E>(self) -> Result<$ty, E> {
            Ok($value)
        }
    };
    ($ty:ty, $value:expr, no_unit) => {
        fn visit_bool<E>(self, _: bool) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<$ty, E> {
            Ok($value)
        }
    };
}

/// Reads a whole frame: an object, an array of members, or anything else.
struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = Frame<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Frame<'de>, A::Error> {
        ObjectVisitor.visit_map(map).map(Frame::Single)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Frame<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = seq.next_element_seed(ObjectSeed)? {
            members.push(member);
        }
        Ok(Frame::Batch(members))
    }

    not_an_object!(Frame<'de>, Frame::Single(Object::NotObject));
}

/// One member of a batch.
struct ObjectSeed;

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Object<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Object<'de>, D::Error> {
        deserializer.deserialize_any(ObjectVisitor)
    }
}

/// Reads one value as a possible request object; anything else is
/// `NotObject` (read in full, so nesting limits still apply).
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let (mut jsonrpc, mut id, mut method, mut params) = (None, None, None, None);
        let mut seen = SeenNames::default();
        let (mut duplicate, mut duplicate_id) = (false, false);
        let mut first = true;
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            if std::mem::take(&mut first) && name == NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(Object::NotObject);
            }
            // Borrowed names cost nothing to keep; only an escaped name is copied.
            if !seen.insert(name.clone()) {
                duplicate = true;
                duplicate_id |= name == "id";
            }
            match name.as_ref() {
                "jsonrpc" => jsonrpc = Some(map.next_value_seed(StrSeed)?.is_some_and(|v| v == "2.0")),
                "id" => id = Some(map.next_value_seed(IdSeed)?),
                "method" => method = Some(map.next_value_seed(StrSeed)?),
                "params" => params = Some(map.next_value::<&'de RawValue>()?.to_owned()),
                // Read in full (not skipped) so the nesting limit holds here too.
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(Object::Request { jsonrpc, id, method, params, duplicate, duplicate_id })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Object<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Object::NotObject)
    }

    not_an_object!(Object<'de>, Object::NotObject);
}

/// Reads `params`, noting the first top-level name that repeats.
struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Params;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Params, D::Error> {
        deserializer.deserialize_any(ParamsVisitor)
    }
}

struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
        let mut members = serde_json::Map::new();
        let mut duplicate = None;
        let mut first = true;
        while let Some(name) = map.next_key::<String>()? {
            if std::mem::take(&mut first) && name == NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(Params::Scalar);
            }
            let value = map.next_value::<Value>()?;
            if let Some(_earlier) = members.insert(name.clone(), value)
                && duplicate.is_none()
            {
                duplicate = Some(name);
            }
        }
        Ok(Params::Object(members, duplicate))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(Params::Array)
    }

    fn visit_unit<E>(self) -> Result<Params, E> {
        Ok(Params::Null)
    }
    not_an_object!(Params, Params::Scalar, no_unit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(bytes: &[u8]) -> (i64, RequestId) {
        let invalid = parse_frame(bytes).expect_err("should be invalid");
        (invalid.error.code.code(), invalid.id)
    }

    #[test]
    fn valid_request_and_notification() {
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).expect("valid");
        assert_eq!(env.id, Some(RequestId::Number(7)));
        assert_eq!(env.method, "ping");
        assert_eq!(env.params, Value::Null);
        let env = parse_frame(br#"{"jsonrpc":"2.0","method":"ping","params":{"a":1}}"#).expect("valid");
        assert_eq!(env.id, None);
        assert_eq!(env.params, json!({"a":1}));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).expect("valid");
        assert_eq!(env.id, Some(RequestId::Null));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":"abc","method":"x"}"#).expect("valid");
        assert_eq!(env.id, Some(RequestId::String("abc".into())));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(code(b"{not json"), (-32700, RequestId::Null));
        assert_eq!(code(b"\xff\xfe"), (-32700, RequestId::Null));
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}"), (-32700, RequestId::Null));
        let deep = "[".repeat(100_000);
        assert_eq!(code(deep.as_bytes()), (-32700, RequestId::Null));
    }

    #[test]
    fn depth_100_is_served() {
        let mut params = String::from("1");
        for _ in 0..98 {
            params = format!("[{params}]");
        }
        let frame = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{params}}}}}"#);
        assert!(parse_frame(frame.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_requests() {
        assert_eq!(code(b"42"), (-32600, RequestId::Null));
        assert_eq!(code(br#"{"id":1,"method":"ping"}"#), (-32600, RequestId::Number(1)));
        assert_eq!(code(br#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#), (-32600, RequestId::String("a".into())));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":5}"#), (-32600, RequestId::Number(1)));
        assert_eq!(code(br#"{"jsonrpc":"2.0","method":5}"#), (-32600, RequestId::Null));
        for bad in ["1.5", "1.0", "1e3", "9223372036854775808", "{}", "true", "[1]", "-1.0"] {
            let frame = format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#);
            assert_eq!(code(frame.as_bytes()), (-32600, RequestId::Null), "id {bad}");
        }
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":-0,"method":"p"}"#).expect("-0 is an integer");
        assert_eq!(env.id, Some(RequestId::Number(0)));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":-0.0,"method":"p"}"#), (-32600, RequestId::Null));
        // Valid JSON (any size of number), but not an id: -32600, not -32700.
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1e400,"method":"p"}"#), (-32600, RequestId::Null));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":18446744073709551617,"method":"p"}"#), (-32600, RequestId::Null));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"p"}"#).expect("i64 min");
        assert_eq!(env.id, Some(RequestId::Number(i64::MIN)));
    }

    #[test]
    fn duplicate_member_names() {
        // In the request object: -32600, with the id unless the id repeats.
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#), (-32600, RequestId::Number(1)));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#), (-32600, RequestId::Null));
        assert_eq!(code(br#"{"jsonrpc":"2.0","method":"a","x":1,"x":2}"#), (-32600, RequestId::Null));
        // In params (top level only): kept for a -32602 naming it.
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"token":"bad","token":"live"}}"#)
            .expect("valid envelope");
        assert_eq!(env.duplicate_param.as_deref(), Some("token"));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"d":{"x":1,"x":2}}}"#)
            .expect("valid envelope");
        assert_eq!(env.duplicate_param, None, "only the top level of params counts");
        // Many names: still found (the set past 8 names).
        let names: Vec<String> = (0..20).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let frame = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":{{{},"k3":0}}}}"#, names.join(","));
        assert_eq!(parse_frame(frame.as_bytes()).expect("valid").duplicate_param.as_deref(), Some("k3"));
        let frame = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"a",{},"k17":0}}"#, names.join(","));
        assert_eq!(code(frame.as_bytes()), (-32600, RequestId::Number(1)));
    }

    #[test]
    fn numbers_keep_their_digits() {
        let frame =
            br#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"a":18446744073709551617,"b":-0,"c":1e400,"d":0.1}}"#;
        let env = parse_frame(frame).expect("valid");
        let raw = env.params_raw.as_deref().map(RawValue::get);
        assert_eq!(raw, Some(r#"{"a":18446744073709551617,"b":-0,"c":1e400,"d":0.1}"#));
        assert_eq!(env.params["a"].to_string(), "18446744073709551617", "beyond 64 bits in the parsed value too");
    }

    #[test]
    fn batches() {
        assert_eq!(parse_message(b"[]"), ParsedMessage::Batch(Vec::new()));
        let ParsedMessage::Batch(members) =
            parse_message(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},1,[],{"jsonrpc":"2.0","method":"b"}]"#)
        else {
            panic!("a batch")
        };
        assert_eq!(members.len(), 4);
        assert_eq!(members[0].as_ref().expect("valid").id, Some(RequestId::Number(1)));
        assert_eq!(members[1].as_ref().expect_err("not an object").error.code.code(), -32600);
        assert_eq!(members[2].as_ref().expect_err("not an object").error.code.code(), -32600);
        assert_eq!(members[3].as_ref().expect("valid").id, None);
        // Invalid JSON anywhere in the batch: one -32700 for the frame.
        assert_eq!(code(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},"#), (-32700, RequestId::Null));
        assert_eq!(code(b"[1]"), (-32600, RequestId::Null));
        // Nesting is counted over the whole frame, batch brackets included.
        let deep = format!("[{}{}]", "[".repeat(127), "]".repeat(127));
        assert_eq!(code(deep.as_bytes()), (-32700, RequestId::Null));
    }
}
