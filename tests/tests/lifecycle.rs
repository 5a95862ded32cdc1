//! `sluice dev` as a user runs it: Ctrl-C shuts everything down cleanly,
//! the demo database included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sluice_e2e::gateway::Gateway;

fn children(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("ps")
        .args(["-o", "pid=", "--ppid", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[tokio::test]
async fn ctrl_c_stops_everything_cleanly() {
    let mut gw = Gateway::demo(&[]).await.unwrap();
    let c = gw.connect("lifecycle").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    let pid = gw.sluice.pid();
    let demo = children(pid);
    assert!(
        !demo.is_empty(),
        "the demo PostgreSQL runs as a child of sluice dev"
    );
    let status = gw.sluice.interrupt(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "sluice dev exited with {status}:\n{}",
        gw.sluice.log()
    );
    for child in demo {
        assert!(
            !std::path::Path::new(&format!("/proc/{child}")).exists(),
            "process {child} (the demo database) outlived sluice dev"
        );
    }
    // The client learns that the session ended.
    assert!(c.simple_query("SELECT 1").await.is_err());
}
