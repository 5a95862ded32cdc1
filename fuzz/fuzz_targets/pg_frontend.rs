//! Client bytes after startup: framing plus every frontend parser the
//! gateway applies. Nothing may panic, whatever arrives.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_data_plane::pg::codec::{frame, frontend};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 20) {
        let body = f.body();
        let _ = match f.tag() {
            b'Q' => frontend::query(body).map(|_| ()),
            b'P' => frontend::parse(body).map(|p| {
                let _ = frontend::encode_parse(p.name, p.query, p.param_types);
            }),
            b'B' => frontend::bind(body).and_then(|_| frontend::bind_parameters(body).map(|_| ())),
            b'E' => frontend::execute(body).map(|_| ()),
            b'D' => frontend::target(body, "Describe").map(|_| ()),
            b'C' => frontend::target(body, "Close").map(|_| ()),
            b'p' => frontend::password(body).map(|_| ()),
            _ => Ok(()),
        };
    }
});
