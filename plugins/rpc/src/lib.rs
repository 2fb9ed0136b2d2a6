//! portcullis_rpc: JSON-RPC 2.0 over Portcullis connections.
#![forbid(unsafe_code)]

mod error;

pub use error::*;
