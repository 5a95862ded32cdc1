//! The JSON documents the HTTP masking benchmarks and the `json_mask`
//! example mask.

/// About `size` bytes of demo customers, with emails, card numbers and
/// API keys at masked paths and a note the detectors scan; with `address`,
/// each note ends in an email address (as `bench/http.sh`'s document).
pub fn customers(size: usize, address: bool) -> Vec<u8> {
    let mut out = b"{\"data\": [".to_vec();
    let mut i = 0u64;
    while out.len() < size {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(
            format!(
                "{{\"id\": {i}, \"name\": \"Customer {i}\", \"email\": \"customer{i}@example.com\", \
                 \"card_number\": \"4111111111111111\", \"api_key\": \"sk_live_{i:016}\", \
                 \"balance\": {}.{:02}, \"active\": true, \"tags\": [\"retail\", \"eu\"], \
                 \"note\": \"prefers contact in the morning; account opened in 2021{}\"}}",
                i * 7 % 1000,
                i % 100,
                if address {
                    format!("; backup contact backup{i}@corpmail.example")
                } else {
                    String::new()
                }
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"]}");
    out
}
