//! The first packet of a connection, before any authentication.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_data_plane::pg::codec::startup;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = startup::decode(&mut buf) {}
});
