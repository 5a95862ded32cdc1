//! The sessions a node serves right now: how to end one on request, and how
//! a cancel request finds the upstream backend it belongs to.

use std::collections::HashMap;
use std::sync::Mutex;

use sluice_common::Shutdown;

/// How to reach the upstream backend of a session, for a cancel request.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// The secret the client was given (ours, not the upstream's).
    pub client_secret: i32,
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Upstream TLS mode.
    pub tls_mode: String,
    /// The upstream backend's pid.
    pub pid: i32,
    /// The upstream backend's secret.
    pub secret: Vec<u8>,
}

/// A session's kill switch and the reason it was pulled.
#[derive(Debug, Clone)]
pub struct Kill {
    /// Fires when the session must end.
    pub token: Shutdown,
    reason: std::sync::Arc<Mutex<Option<String>>>,
}

impl Kill {
    /// Why the session was ended, if it was.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

#[derive(Debug, Default)]
struct Inner {
    kills: HashMap<String, Kill>,
    cancels: HashMap<i32, CancelTarget>,
}

/// The registry; shared by every connection of the node.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

impl Sessions {
    /// Registers a session; returns its kill switch.
    pub fn open(&self, session_id: &str, parent: &Shutdown) -> Kill {
        let kill = Kill {
            token: parent.child_token(),
            reason: Default::default(),
        };
        if let Ok(mut g) = self.inner.lock() {
            g.kills.insert(session_id.to_owned(), kill.clone());
        }
        kill
    }

    /// Forgets a session (and its cancel key).
    pub fn close(&self, session_id: &str, cancel_pid: Option<i32>) {
        if let Ok(mut g) = self.inner.lock() {
            g.kills.remove(session_id);
            if let Some(pid) = cancel_pid {
                g.cancels.remove(&pid);
            }
        }
    }

    /// Ends a session, if this node serves it.
    pub fn kill(&self, session_id: &str, reason: &str) {
        if let Ok(g) = self.inner.lock()
            && let Some(k) = g.kills.get(session_id)
        {
            if let Ok(mut r) = k.reason.lock() {
                *r = Some(reason.to_owned());
            }
            k.token.cancel();
            tracing::info!(session_id, reason, "session killed");
        }
    }

    /// Number of sessions open.
    pub fn active(&self) -> usize {
        self.inner.lock().map(|g| g.kills.len()).unwrap_or(0)
    }

    /// Allocates a fresh client-facing backend key for `target`; returns the
    /// (pid, secret) to send the client.
    pub fn register_cancel(&self, mut target: CancelTarget) -> (i32, i32) {
        use rand::Rng as _;
        let mut rng = rand::thread_rng();
        let secret: i32 = rng.r#gen();
        target.client_secret = secret;
        let Ok(mut g) = self.inner.lock() else {
            return (0, secret);
        };
        loop {
            let pid = rng.gen_range(1..i32::MAX);
            if let std::collections::hash_map::Entry::Vacant(e) = g.cancels.entry(pid) {
                e.insert(target);
                return (pid, secret);
            }
        }
    }

    /// The upstream to cancel for a client's (pid, secret), if they match.
    pub fn cancel_target(&self, pid: i32, secret: &[u8]) -> Option<CancelTarget> {
        let g = self.inner.lock().ok()?;
        let t = g.cancels.get(&pid)?;
        // Constant-time comparison: the secret is the only thing that stops
        // one client from cancelling another's queries.
        let expected = t.client_secret.to_be_bytes();
        if secret.len() != expected.len() {
            return None;
        }
        let diff = secret
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then(|| t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CancelTarget {
        CancelTarget {
            client_secret: 0,
            host: "h".into(),
            port: 5432,
            tls_mode: "disable".into(),
            pid: 77,
            secret: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn cancel_keys_need_the_right_secret() {
        let s = Sessions::default();
        let (pid, secret) = s.register_cancel(target());
        assert_eq!(s.cancel_target(pid, &secret.to_be_bytes()).unwrap().pid, 77);
        assert!(
            s.cancel_target(pid, &secret.wrapping_add(1).to_be_bytes())
                .is_none()
        );
        assert!(s.cancel_target(pid, &[0; 3]).is_none());
        s.close("x", Some(pid));
        assert!(s.cancel_target(pid, &secret.to_be_bytes()).is_none());
    }

    #[test]
    fn kill_fires_the_sessions_token_with_a_reason() {
        let s = Sessions::default();
        let root = Shutdown::new();
        let k = s.open("sess", &root);
        assert_eq!(s.active(), 1);
        s.kill("sess", "revoked");
        assert!(k.token.is_cancelled());
        assert_eq!(k.reason().as_deref(), Some("revoked"));
        s.close("sess", None);
        assert_eq!(s.active(), 0);
    }
}
