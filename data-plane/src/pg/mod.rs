//! The Postgres wire protocol: the client-facing side (listener and
//! handshake), the upstream side (connecting to targets with the gateway's
//! own credentials), the codec both share, and the relay between them.

pub mod catalogs;
pub mod client;
pub mod codec;
pub mod error;
pub mod io;
pub mod mask;
pub mod relay;
pub mod stream;
pub mod upstream;
