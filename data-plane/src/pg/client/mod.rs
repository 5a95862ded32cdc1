//! The client-facing side: accepting connections, the startup handshake and
//! token authentication, then handing the session to the relay.

pub mod handshake;
pub mod listener;
pub mod session;
