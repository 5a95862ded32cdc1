//! Access-token checks shared by every client protocol: one place decides
//! whether a token is trusted and not revoked, so the Postgres listener and
//! the HTTP gateway can never disagree about who may enter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sluice_identity::Identity;

use crate::control::snapshot::NodeSnapshot;

/// Why a token was refused; the text is what the client is told (it never
/// repeats the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// The snapshot carries no usable key set.
    #[error("authentication failed: the gateway has no trusted token keys")]
    NoKeys,
    /// The token did not verify.
    #[error("authentication failed: {0}")]
    Invalid(String),
    /// The token verified but has been revoked.
    #[error("authentication failed: the access token has been revoked")]
    Revoked,
    /// The token is past its `exp` by this node's clock, though within the
    /// verifier's clock-skew leeway: its sessions end at that moment, so it
    /// would only open one that ends at once.
    #[error("authentication failed: the access token has expired: get a new one")]
    Expired,
}

/// Verifies `token` against every issuer the snapshot trusts and checks it
/// is not revoked. A refusal is logged as an audit-relevant event (never
/// with the token) naming `protocol` and the claimed issuer.
pub async fn verify_token(
    snapshot: &NodeSnapshot,
    token: &str,
    peer: SocketAddr,
    protocol: &str,
) -> Result<Identity, AuthRefusal> {
    if snapshot.trust.is_empty() {
        return Err(AuthRefusal::NoKeys);
    }
    let identity = match snapshot.trust.verify(token).await {
        Ok(v) => {
            tracing::info!(identity = %v.identity.name, kind = v.identity.kind.as_str(), issuer = %v.issuer, protocol, "client authenticated");
            v.identity
        }
        Err(e) => {
            tracing::warn!(
                event = "auth_refused",
                client_addr = %peer,
                claimed_issuer = %claimed_issuer(token),
                reason = %e,
                protocol,
                "client authentication refused"
            );
            return Err(AuthRefusal::Invalid(e.to_string()));
        }
    };
    if snapshot.is_revoked(&identity.token_id) {
        return Err(AuthRefusal::Revoked);
    }
    if expired(identity.expires_at) {
        return Err(AuthRefusal::Expired);
    }
    Ok(identity)
}

/// Whether a token expiring at `expires_at` (seconds) has expired by this
/// node's clock: the moment its sessions end.
pub fn expired(expires_at: u64) -> bool {
    expired_at(expires_at, sluice_common::unix_ms())
}

fn expired_at(expires_at: u64, now_ms: i64) -> bool {
    let now_ms = u64::try_from(now_ms).unwrap_or(0);
    expires_at.saturating_mul(1000) <= now_ms
}

/// How many verified tokens a [`TokenCache`] holds by default.
pub const TOKEN_CACHE_ENTRIES: usize = 4096;

/// The longest a verified token is trusted without checking its signature
/// again, even when it expires later: an external issuer's key set can
/// change between snapshots, and a removed key must stop working soon.
pub const TOKEN_CACHE_MAX_AGE: Duration = Duration::from_secs(60);

/// Tokens whose signature verified recently, so a client that sends the same
/// token on every request (HTTP) is not charged a signature check each time.
///
/// Keyed by the token's SHA-256 (the token itself is never kept). An entry
/// is used only while the snapshot it was verified under is still the
/// current one (a new snapshot is how the trusted keys change), before the
/// token's own expiry, and for at most [`TOKEN_CACHE_MAX_AGE`]. Only
/// successes are stored: a refused token is checked afresh every time.
/// Revocation is not cached: the caller checks it on every use.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
    capacity: usize,
    max_age_ms: i64,
}

#[derive(Debug, Clone)]
struct Cached {
    identity: Identity,
    snapshot_version: u64,
    /// Unix milliseconds after which the entry is not used.
    valid_until_ms: i64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(TOKEN_CACHE_ENTRIES, TOKEN_CACHE_MAX_AGE)
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, each trusted for at most
    /// `max_age` (0 entries: nothing is cached).
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The cache key of `token`: its digest, so the cache never holds a
    /// usable token.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity `key` verified as under snapshot `version`, if that is
    /// still usable at `now_ms`; a stale entry is dropped.
    fn get(&self, key: &[u8; 32], version: u64, now_ms: i64) -> Option<Identity> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let usable = map.get(key)?;
        if usable.snapshot_version == version && now_ms < usable.valid_until_ms {
            return Some(usable.identity.clone());
        }
        map.remove(key);
        None
    }

    /// Remembers that `key` verified as `identity` under snapshot
    /// `version` at `now_ms`. When full, stale entries go first, then an
    /// arbitrary one, so the cache never grows past its capacity.
    fn put(&self, key: [u8; 32], identity: &Identity, version: u64, now_ms: i64) {
        if self.capacity == 0 {
            return;
        }
        let expires_ms = i64::try_from(identity.expires_at)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let valid_until_ms = expires_ms.min(now_ms.saturating_add(self.max_age_ms));
        if valid_until_ms <= now_ms {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, c| c.snapshot_version == version && now_ms < c.valid_until_ms);
            if map.len() >= self.capacity
                && let Some(victim) = map.keys().next().copied()
            {
                map.remove(&victim);
            }
        }
        map.insert(
            key,
            Cached {
                identity: identity.clone(),
                snapshot_version: version,
                valid_until_ms,
            },
        );
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TokenCache {
    /// [`verify_token`], with the signature check skipped for a token this
    /// cache verified recently under the same snapshot. Revocation is
    /// checked every time; refusals are never cached (and are logged as by
    /// [`verify_token`]).
    pub async fn verify(
        &self,
        snapshot: &NodeSnapshot,
        token: &str,
        peer: SocketAddr,
        protocol: &str,
    ) -> Result<Identity, AuthRefusal> {
        if snapshot.trust.is_empty() {
            return Err(AuthRefusal::NoKeys);
        }
        let key = Self::key(token);
        let now_ms = sluice_common::unix_ms();
        if let Some(identity) = self.get(&key, snapshot.version, now_ms) {
            if snapshot.is_revoked(&identity.token_id) {
                return Err(AuthRefusal::Revoked);
            }
            return Ok(identity);
        }
        let identity = verify_token(snapshot, token, peer, protocol).await?;
        self.put(key, &identity, snapshot.version, now_ms);
        Ok(identity)
    }
}

/// The `iss` a token claims (unverified), bounded, for the record.
pub fn claimed_issuer(token: &str) -> String {
    bounded(&sluice_identity::oidc::validate::peek_issuer(token).unwrap_or_default())
}

/// At most 200 bytes of what a client claimed, for the record.
fn bounded(s: &str) -> String {
    s[..s.floor_char_boundary(200)].to_owned()
}

/// A refused sign-in, as both listeners record it.
#[derive(Debug)]
pub struct RefusedSignIn<'a> {
    /// Where the client came from.
    pub peer: SocketAddr,
    /// The user name it gave (Postgres only).
    pub user: &'a str,
    /// The target it asked for.
    pub target: &'a str,
    /// Its token, for the issuer it claims (never recorded itself).
    pub token: &'a str,
    /// Why it was refused.
    pub reason: String,
    /// `postgres` or `http`.
    pub protocol: &'static str,
    /// Whether it spoke TLS.
    pub tls: bool,
}

/// Records a refused sign-in in a session of its own, so auditors see
/// attempts that never became sessions.
pub fn record_refused_sign_in(audit: &crate::control::audit::AuditSink, r: RefusedSignIn<'_>) {
    use sluice_proto::v1::audit_event::Payload;
    let event = sluice_proto::v1::AuditEvent {
        session_id: uuid::Uuid::now_v7().to_string(),
        seq: 1,
        at_unix_us: sluice_common::unix_us(),
        payload: Some(Payload::AuthFailure(sluice_proto::v1::AuthFailure {
            client_addr: r.peer.to_string(),
            user: bounded(r.user),
            target: bounded(r.target),
            reason: r.reason,
            claimed_issuer: claimed_issuer(r.token),
            protocol: r.protocol.to_owned(),
            tls: r.tls,
        })),
    };
    if audit.emit(event).is_err() {
        tracing::error!("audit buffer full: refused sign-in not recorded");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_identity::{Issuer, PrincipalKind, SigningKey};
    use sluice_proto::v1;

    use super::*;

    #[test]
    fn a_token_has_expired_from_its_exp_second_on() {
        assert!(!expired_at(100, 99_999));
        assert!(expired_at(100, 100_000));
        assert!(expired_at(100, 100_001));
        assert!(expired_at(0, 0));
        assert!(!expired_at(u64::MAX, i64::MAX));
        assert!(
            !expired_at(1, -5),
            "a clock before the epoch expires nothing"
        );
        assert!(expired(1));
        assert!(!expired(u64::MAX));
    }

    const ISS: &str = "https://cp.example";

    fn snapshot(issuer: &Issuer, version: u64, revoked: &[&str]) -> NodeSnapshot {
        NodeSnapshot::from_proto(v1::Snapshot {
            version,
            token_trust: Some(v1::TokenTrust {
                issuer: ISS.to_owned(),
                audience: "sluice".to_owned(),
                jwks_json: issuer.jwks_json(),
                external_issuers: Vec::new(),
            }),
            revoked_token_ids: revoked.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
    }

    fn issuer() -> Issuer {
        Issuer::new(ISS, "sluice", SigningKey::generate()).unwrap()
    }

    fn token(issuer: &Issuer) -> (String, String) {
        let t = issuer
            .issue(
                "agent-1",
                PrincipalKind::Agent,
                &["agents".into()],
                &[],
                Duration::from_secs(300),
            )
            .unwrap();
        (t.token, t.token_id)
    }

    fn identity(expires_at: u64) -> Identity {
        Identity {
            name: "agent-1".to_owned(),
            kind: PrincipalKind::Agent,
            groups: Vec::new(),
            roles: Vec::new(),
            token_id: "t1".to_owned(),
            expires_at,
        }
    }

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    #[test]
    fn an_entry_ends_at_the_tokens_expiry_or_its_max_age() {
        let cache = TokenCache::new(8, Duration::from_secs(60));
        let k = TokenCache::key("a");
        // Expires 10 s after now: usable just before, not at the expiry.
        cache.put(k, &identity(1_010), 1, 1_000_000);
        assert!(cache.get(&k, 1, 1_009_999).is_some());
        assert!(cache.get(&k, 1, 1_010_000).is_none());
        assert!(cache.is_empty(), "a stale entry is dropped when seen");
        // Expires much later: the max age bounds it.
        cache.put(k, &identity(10_000), 1, 1_000_000);
        assert!(cache.get(&k, 1, 1_059_999).is_some());
        assert!(cache.get(&k, 1, 1_060_000).is_none());
        // Already expired: never stored.
        cache.put(k, &identity(999), 1, 1_000_000);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_new_snapshot_forgets_every_verified_token() {
        let cache = TokenCache::new(8, Duration::from_secs(60));
        let k = TokenCache::key("a");
        cache.put(k, &identity(10_000), 7, 1_000_000);
        assert!(cache.get(&k, 8, 1_000_001).is_none());
        assert!(cache.get(&k, 7, 1_000_001).is_none(), "dropped, not kept");
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = TokenCache::new(3, Duration::from_secs(60));
        for i in 0..10 {
            cache.put(
                TokenCache::key(&i.to_string()),
                &identity(10_000),
                1,
                1_000_000,
            );
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        // Stale entries make room before live ones are evicted.
        let cache = TokenCache::new(2, Duration::from_secs(60));
        cache.put(TokenCache::key("old"), &identity(10_000), 1, 1_000_000);
        cache.put(TokenCache::key("live"), &identity(10_000), 2, 1_000_000);
        cache.put(TokenCache::key("new"), &identity(10_000), 2, 1_000_000);
        assert!(cache.get(&TokenCache::key("live"), 2, 1_000_001).is_some());
        assert!(cache.get(&TokenCache::key("new"), 2, 1_000_001).is_some());
        let none = TokenCache::new(0, Duration::from_secs(60));
        none.put(TokenCache::key("a"), &identity(10_000), 1, 1_000_000);
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn only_verified_tokens_are_cached_and_revocation_still_applies() {
        let iss = issuer();
        let (good, id) = token(&iss);
        let cache = TokenCache::default();
        let snap = snapshot(&iss, 1, &[]);

        // A forged token is refused, and stays refused: nothing was cached.
        let mut forged = good.clone().into_bytes();
        let i = forged.len() - 10;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                cache.verify(&snap, &forged, PEER, "http").await,
                Err(AuthRefusal::Invalid(_))
            ));
        }
        assert!(cache.is_empty());

        // A good token is verified once, then served from the cache.
        let first = cache.verify(&snap, &good, PEER, "http").await.unwrap();
        assert_eq!(first.name, "agent-1");
        assert_eq!(cache.len(), 1);
        let again = cache.verify(&snap, &good, PEER, "http").await.unwrap();
        assert_eq!(again.token_id, first.token_id);

        // A newer snapshot that revokes it refuses it although it is cached.
        let revoked = snapshot(&iss, 2, &[&id]);
        assert_eq!(
            cache.verify(&revoked, &good, PEER, "http").await,
            Err(AuthRefusal::Revoked)
        );

        // A snapshot that trusts another key refuses it: the trust changed.
        let other = snapshot(&issuer(), 3, &[]);
        assert!(matches!(
            cache.verify(&other, &good, PEER, "http").await,
            Err(AuthRefusal::Invalid(_))
        ));
        assert!(cache.is_empty());
    }
}
