//! Server bytes: framing, the response tracker fed arbitrary message
//! sequences, and the backend parsers (errors, tags, authentication).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_data_plane::pg::codec::{backend, frame};
use sluice_data_plane::pg::relay::tracker::{Expect, Tracker};

fuzz_target!(|data: &[u8]| {
    let Some((&plan, rest)) = data.split_first() else { return };
    let mut tracker = Tracker::default();
    // The first byte chooses what the client is waiting for.
    for bit in 0..8 {
        tracker.push(match (plan >> bit) & 1 {
            0 => Expect::Parse { denial: None },
            _ => Expect::Sync,
        });
    }
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 20) {
        let _ = backend::error_field(f.body(), b'C');
        let _ = backend::command_rows(f.body());
        let _ = backend::auth_request(f.body());
        let _ = backend::parse_parameter_status(f.body());
        if tracker.on_server(f.tag(), f.body()).is_err() {
            break;
        }
    }
});
