//! The cost of reading a `userdata_save` frame: the envelope pass (which
//! keeps `params` raw and numbers as written), the typed params with
//! `data` kept raw, and compacting `data` for the store — against a plain
//! `serde_json::Value` parse and re-serialization of the same frame, the
//! shape of the path before numbers were kept exactly.
//!
//! `cargo bench -p portcullis_rpc --bench save_frame`
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_rpc::{ParsedMessage, compact_json, parse_message};
use serde_json::Value;
use serde_json::value::RawValue;

/// A ~60 KB save: 1,000 entries mixing numbers, strings and nesting.
fn save_frame() -> Vec<u8> {
    let entries: Vec<String> = (0..1000)
        .map(|i| format!(r#""item{i}":{{"n":{i},"x":{}.25,"name":"sword of {i}","tags":[1,2,3]}}"#, i * 7))
        .collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"userdata_save","params":{{"token":"{}","data":{{{}}}}}}}"#,
        "a".repeat(64),
        entries.join(",")
    )
    .into_bytes()
}

#[derive(serde::Deserialize)]
struct SaveParams {
    #[allow(dead_code)]
    token: String,
    data: Box<RawValue>,
}

fn bench(c: &mut Criterion) {
    let frame = save_frame();
    let mut group = c.benchmark_group(format!("save_frame_{}_bytes", frame.len()));
    group.bench_function("portcullis_path", |b| {
        b.iter(|| {
            let ParsedMessage::Single(Ok(envelope)) = parse_message(&frame) else { panic!("valid") };
            let raw = envelope.params_raw.unwrap();
            let params: SaveParams = serde_json::from_str(raw.get()).unwrap();
            compact_json(&params.data).text.len()
        });
    });
    group.bench_function("value_parse_and_to_string", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(&frame).unwrap();
            serde_json::to_string(&value["params"]["data"]).unwrap().len()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
