//! What the network layer says by itself to a connection it refuses.

use bevy_ecs::prelude::*;

/// One goodbye: a message and the close that follows it.
///
/// A line transport sends `message` as one line (the `\n` added) and closes;
/// a WebSocket sends it as one text message, then a Close frame with status
/// 1000 and `reason` as its reason text (docs/protocol.md §1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// The message, without a line terminator.
    pub message: String,
    /// The close reason text (at most 123 bytes, the room in a WebSocket Close frame).
    pub reason: String,
}

/// The goodbyes of connections the listeners refuse before any entity exists
/// for them (docs/protocol.md §6). Inserted empty by `NetPlugin`; the layers
/// that own these situations' wording fill it in their `Plugin::build`
/// (the listeners read it when they start, in `Startup`). `None` refuses with
/// no message, only the close.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct Goodbyes {
    /// For a connection refused because `max_connections` are open.
    pub server_full: Option<Goodbye>,
    /// For a connection accepted after [`NetControl::stop_accepting`](crate::NetControl::stop_accepting)
    /// (a shutdown).
    pub server_shutdown: Option<Goodbye>,
}
