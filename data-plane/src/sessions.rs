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
    /// Wakes a statement the session holds for approval, which has not
    /// reached the server yet: the cancel withdraws its request.
    pub held: std::sync::Arc<tokio::sync::Notify>,
}

/// A session's kill switch and the reason it was pulled.
#[derive(Debug, Clone)]
pub struct Kill {
    /// Fires when the session must end now.
    pub token: Shutdown,
    /// Fires when the session must end once no statement is in flight.
    pub drain: Shutdown,
    reason: std::sync::Arc<Mutex<Option<String>>>,
}

impl Kill {
    /// Records why, then fires the drain or the immediate switch. The first
    /// reason given is kept.
    fn pull(&self, reason: &str, drain: bool) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| reason.to_owned());
        }
        if drain {
            self.drain.cancel();
        } else {
            self.token.cancel();
        }
    }

    /// Why the session was ended, if it was.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

#[derive(Debug)]
struct Live {
    kill: Kill,
    /// The `jti` of the token that opened the session, so a revocation ends
    /// every session it opened.
    token_id: String,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<String, Live>,
    cancels: HashMap<i32, CancelTarget>,
}

/// The registry; shared by every connection of the node.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

impl Sessions {
    /// Registers a session opened with the token `token_id`; returns its
    /// kill switch.
    pub fn open(&self, session_id: &str, token_id: &str, parent: &Shutdown) -> Kill {
        let kill = Kill {
            token: parent.child_token(),
            drain: Shutdown::new(),
            reason: Default::default(),
        };
        if let Ok(mut g) = self.inner.lock() {
            g.live.insert(
                session_id.to_owned(),
                Live {
                    kill: kill.clone(),
                    token_id: token_id.to_owned(),
                },
            );
        }
        kill
    }

    /// Forgets a session (and its cancel key).
    pub fn close(&self, session_id: &str, cancel_pid: Option<i32>) {
        if let Ok(mut g) = self.inner.lock() {
            g.live.remove(session_id);
            if let Some(pid) = cancel_pid {
                g.cancels.remove(&pid);
            }
        }
    }

    /// Ends a session now, if this node serves it.
    pub fn kill(&self, session_id: &str, reason: &str) {
        self.end(session_id, reason, false);
    }

    /// Ends a session once the statement in flight (if any) has finished.
    pub fn drain(&self, session_id: &str, reason: &str) {
        self.end(session_id, reason, true);
    }

    fn end(&self, session_id: &str, reason: &str, drain: bool) {
        if let Ok(g) = self.inner.lock()
            && let Some(live) = g.live.get(session_id)
        {
            live.kill.pull(reason, drain);
            tracing::info!(session_id, reason, drain, "session ended by the gateway");
        }
    }

    /// Ends every session opened with a token in `revoked` (sorted), now.
    /// Returns how many were ended.
    pub fn kill_revoked(&self, revoked: &[String]) -> usize {
        let Ok(g) = self.inner.lock() else {
            return 0;
        };
        let mut n = 0;
        for (id, live) in &g.live {
            if revoked.binary_search(&live.token_id).is_ok() {
                live.kill.pull("the access token was revoked", false);
                tracing::info!(session_id = %id, "session ended: its token was revoked");
                n += 1;
            }
        }
        n
    }

    /// Number of sessions open.
    pub fn active(&self) -> usize {
        self.inner.lock().map(|g| g.live.len()).unwrap_or(0)
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
            held: Default::default(),
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
        let k = s.open("sess", "jti-1", &root);
        assert_eq!(s.active(), 1);
        s.kill("sess", "revoked");
        assert!(k.token.is_cancelled());
        assert_eq!(k.reason().as_deref(), Some("revoked"));
        s.close("sess", None);
        assert_eq!(s.active(), 0);
    }

    #[test]
    fn a_revocation_ends_exactly_the_sessions_of_that_token() {
        let s = Sessions::default();
        let root = Shutdown::new();
        let a = s.open("a", "jti-a", &root);
        let b = s.open("b", "jti-b", &root);
        let a2 = s.open("a2", "jti-a", &root);
        assert_eq!(s.kill_revoked(&["jti-a".to_owned(), "jti-z".to_owned()]), 2);
        assert!(a.token.is_cancelled() && a2.token.is_cancelled());
        assert!(!b.token.is_cancelled());
        assert_eq!(a.reason().as_deref(), Some("the access token was revoked"));
    }

    #[test]
    fn draining_fires_only_the_drain_switch() {
        let s = Sessions::default();
        let k = s.open("d", "jti", &Shutdown::new());
        s.drain("d", "the access token expired");
        assert!(k.drain.is_cancelled());
        assert!(!k.token.is_cancelled());
        assert_eq!(k.reason().as_deref(), Some("the access token expired"));
    }
}
