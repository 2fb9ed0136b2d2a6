//! Arbitrary bytes from a client, through the frame decoder, the envelope
//! parser and the whole dispatcher (session gate, methods, store) of a
//! running server app with the in-memory transport.
#![no_main]

use std::cell::RefCell;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portcullis_net::FrameCodec;
use portcullis_testkit::{TestConfig, TestServer};
use tokio_util::codec::Decoder;

thread_local! {
    static SERVER: RefCell<TestServer> = RefCell::new(TestServer::with_config(TestConfig::default()));
}

fuzz_target!(|data: &[u8]| {
    // The decoder and parser alone.
    let mut codec = FrameCodec::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let _ = portcullis_rpc::parse_frame(&frame);
    }
    // The same bytes sent by a client of a live app.
    SERVER.with(|server| {
        let mut server = server.borrow_mut();
        let mut client = server.connect();
        client.raw.send_bytes(data);
        server.step(3);
        let _ = client.take_all();
        client.disconnect();
        server.update();
    });
});
