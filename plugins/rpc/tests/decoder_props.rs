//! Properties of the frame decoder and the envelope parser over arbitrary
//! input (issue 6: no input a client can send crashes or confuses the server).
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use portcullis_net::{FrameCodec, FrameError};
use portcullis_rpc::{Envelope, ErrorCode, RequestId, parse_frame};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio_util::codec::Decoder;

const MAX: usize = 256;

/// Splits `input` into frames the way a connection does; stops at the first
/// frame that is too large, as the server does.
fn frames(input: &[u8], chunk: usize) -> (Vec<Vec<u8>>, bool) {
    let mut codec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => out.push(frame.to_vec()),
                Ok(None) => break,
                Err(FrameError::TooLarge) => return (out, true),
                Err(e) => panic!("no i/o here: {e}"),
            }
        }
    }
    (out, false)
}

proptest! {
    /// Any byte sequence, in any split, gives frames no longer than the limit,
    /// and the same frames whatever the split.
    #[test]
    fn framing_is_bounded_and_split_independent(input in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let (whole, whole_too_large) = frames(&input, input.len().max(1));
        let (split, split_too_large) = frames(&input, chunk);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(whole_too_large, split_too_large);
        for f in &whole {
            prop_assert!(f.len() <= MAX);
            prop_assert!(!f.contains(&b'\n'));
        }
    }

    /// Any frame is either a request/notification or one of the errors of
    /// docs/protocol.md §3 that a frame can cause (-32700, -32600), never a panic.
    #[test]
    fn any_frame_parses_or_gets_a_protocol_error(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        match parse_frame(&frame) {
            Ok(Envelope { method, .. }) => prop_assert!(!method.is_empty() || frame.windows(8).any(|w| w == b"\"method\"")),
            Err(invalid) => {
                prop_assert!(matches!(invalid.error.code, ErrorCode::ParseError | ErrorCode::InvalidRequest));
                if invalid.error.code == ErrorCode::ParseError {
                    prop_assert_eq!(invalid.id, RequestId::Null);
                }
            }
        }
    }

    /// Any JSON text (not only valid requests) is classified without a panic.
    #[test]
    fn any_json_value_is_classified(value in arb_json()) {
        let text = value.to_string();
        let _ = parse_frame(text.as_bytes());
    }

    /// A valid request round-trips: id, method and params come back as sent.
    #[test]
    fn valid_requests_round_trip(
        id in prop_oneof![any::<i64>().prop_map(|n| json!(n)), "[a-zA-Z0-9 _\\-\u{e9}\u{4e2d}]{0,12}".prop_map(|s| json!(s)), Just(Value::Null)],
        method in "[a-z_]{1,16}",
        params in arb_json(),
    ) {
        let params = json!({ "p": params });
        let frame = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let env = parse_frame(frame.as_bytes()).unwrap();
        prop_assert_eq!(env.method, method);
        prop_assert_eq!(env.params, params);
        let echoed: Value = serde_json::from_str(&env.id.unwrap().to_json()).unwrap();
        prop_assert_eq!(echoed, id);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::hash_map("[a-z]{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
