//! Writing a command's output. A closed pipe (`sluice ... | head -1`) ends
//! the output quietly instead of panicking, as a Unix tool should.

use std::io::Write as _;

/// Writes `text` to standard output; errors (a closed pipe) are ignored, as
/// there is no one left to tell.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
