//! Pieces every Sluice process shares: TLS material, the health and metrics
//! endpoints, shutdown signalling and reconnect backoff.

pub mod backoff;
pub mod health;
pub mod local_pg;
pub mod tls;

pub use tokio_util::sync::CancellationToken as Shutdown;

/// The version every process reports to its peers and in `/livez`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, saturating on a clock before 1970.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
