//! Email as an approval channel: each eligible approver gets a link that is
//! signed (HMAC-SHA256), bound to that approver and that request, expiring
//! with the request, and usable once. Opening the link only shows a
//! confirmation page (mail scanners prefetch links); the page's form
//! decides. Signing and checking links are pure; [`Mailer`] is the thin
//! SMTP client.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::Approval;

/// The longest link token accepted, in bytes.
const MAX_TOKEN: usize = 1024;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: for a relay on the same host only.
    None,
}

/// The `[email]` configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server host name.
    pub smtp_host: String,
    /// The SMTP server port.
    #[serde(default = "default_port")]
    pub smtp_port: u16,
    /// How the connection is secured.
    #[serde(default)]
    pub tls: SmtpTls,
    /// SMTP user name, if the server wants a login.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender address (`Sluice <sluice@example.com>`).
    pub from: String,
    /// The public base URL links point to (this control plane's HTTP API).
    pub public_url: String,
    /// The key that signs links; without it, a key derived from the control
    /// plane's signing key (the same on every replica).
    #[serde(default)]
    pub link_key: Option<String>,
    /// Who is mailed, and who a link decides as.
    #[serde(default)]
    pub approvers: Vec<EmailApprover>,
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("public_url", &self.public_url)
            .field("approvers", &self.approvers.len())
            .finish_non_exhaustive()
    }
}

fn default_port() -> u16 {
    587
}

/// A Sluice identity that decides by email.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailApprover {
    /// The Sluice identity the decision is recorded as.
    pub identity: String,
    /// Where its links are sent.
    pub email: String,
    /// Its groups, checked against the policy's approver groups at vote time.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link we made, or altered.
    #[error("this approval link is not valid")]
    BadSignature,
    /// The request's deadline passed.
    #[error("this approval link has expired")]
    Expired,
    /// The link was used before.
    #[error("this approval link was already used")]
    Used,
    /// The approver it names is no longer configured.
    #[error("this approval link's approver is not an email approver")]
    UnknownApprover,
}

/// What a link says: who decides which request, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The request.
    #[serde(rename = "a")]
    pub approval_id: String,
    /// The approver's identity.
    #[serde(rename = "i")]
    pub identity: String,
    /// When the link lapses (µs since the epoch): the request's deadline.
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// Makes each link unique (so each is used once).
    #[serde(rename = "n")]
    pub nonce: String,
}

/// What the control plane's signing key signs to derive the link key: an
/// Ed25519 signature is deterministic and needs the private key, so every
/// replica derives the same secret and nobody without the key can.
pub const KEY_LABEL: &[u8] = b"sluice approval email link key v1";

/// The HMAC key links are signed with: the configured key, or one derived
/// from `secret` (the signing key's signature over [`KEY_LABEL`]).
pub fn link_key(configured: Option<&str>, secret: &[u8]) -> Vec<u8> {
    match configured {
        Some(k) => k.as_bytes().to_vec(),
        None => {
            let mut h = Sha256::new();
            h.update(b"sluice approval email links v1\0");
            h.update(secret);
            h.finalize().to_vec()
        }
    }
}

fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"sluice-email-link:");
    m.update(payload);
    m
}

/// Signs `claims` into a URL-safe token.
pub fn sign_link(key: &[u8], claims: &LinkClaims) -> String {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let tag = mac(key, &payload).finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Checks a token's signature (constant time) and its deadline against
/// `now` (µs). Says nothing about whether it was used.
pub fn verify_link(key: &[u8], token: &str, now: i64) -> Result<LinkClaims, LinkError> {
    if token.len() > MAX_TOKEN {
        return Err(LinkError::BadSignature);
    }
    let (p, t) = token.split_once('.').ok_or(LinkError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| LinkError::BadSignature)?;
    let tag = URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| LinkError::BadSignature)?;
    mac(key, &payload)
        .verify_slice(&tag)
        .map_err(|_| LinkError::BadSignature)?;
    let claims: LinkClaims =
        serde_json::from_slice(&payload).map_err(|_| LinkError::BadSignature)?;
    if now >= claims.expires_at {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

/// Who and which request a link names, read without checking its
/// signature: only to record who an altered or refused link claimed to be.
/// Never trusted for anything else.
pub fn claimed(token: &str) -> Option<LinkClaims> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let (p, _) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// The id a used link is remembered by (never the token itself).
pub fn link_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The approvers of `config` that may decide `a`: in one of its groups and
/// not its requester.
pub fn recipients<'a>(approvers: &'a [EmailApprover], a: &Approval) -> Vec<&'a EmailApprover> {
    approvers
        .iter()
        .filter(|p| p.identity != a.identity)
        .filter(|p| a.approvers.is_empty() || p.groups.iter().any(|g| a.approvers.contains(g)))
        .collect()
}

/// The plain-text mail for one approver.
pub fn body(a: &Approval, link: &str) -> String {
    format!(
        "{identity} asks to run a statement on {target} that needs approval.\n\n\
         Statement:\n{statement}\n\nReason: {reason}\nRequest: {id}\n\n\
         Review and decide (the link works once, for you only, until the request expires):\n{link}\n",
        identity = a.identity,
        target = a.target,
        statement = a.statement,
        reason = a.reason,
        id = a.id,
    )
}

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration is unusable.
    #[error("email configuration: {0}")]
    Config(String),
    /// The SMTP exchange failed.
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// The SMTP client.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mailer {
    /// Builds the client from the configuration (no connection is made yet).
    pub fn new(c: &EmailConfig) -> Result<Self, MailError> {
        let mut b = match c.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.smtp_host)
                .map_err(|e| MailError::Config(e.to_string()))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.smtp_host)
                .map_err(|e| MailError::Config(e.to_string()))?,
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp_host),
        }
        .port(c.smtp_port);
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let from = c
            .from
            .parse()
            .map_err(|e| MailError::Config(format!("from: {e}")))?;
        Ok(Self {
            transport: b.build(),
            from,
        })
    }

    /// Sends one plain-text mail.
    pub async fn send(&self, to: &str, subject: &str, text: String) -> Result<(), MailError> {
        let to = to
            .parse()
            .map_err(|e| MailError::Config(format!("recipient: {e}")))?;
        let m = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| MailError::Config(e.to_string()))?;
        self.transport
            .send(m)
            .await
            .map(drop)
            .map_err(|e| MailError::Smtp(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            approval_id: "apr_1".into(),
            identity: "bob".into(),
            expires_at: 1_000,
            nonce: "n1".into(),
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let t = sign_link(b"k", &claims());
        assert_eq!(verify_link(b"k", &t, 999).unwrap(), claims());
        assert_eq!(verify_link(b"k", &t, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn another_key_or_an_altered_link_is_refused() {
        let t = sign_link(b"k", &claims());
        assert_eq!(verify_link(b"other", &t, 0), Err(LinkError::BadSignature));
        let mut c = claims();
        c.identity = "alice".into();
        let forged = sign_link(b"x", &c);
        let (p, _) = forged.split_once('.').unwrap();
        let (_, tag) = t.split_once('.').unwrap();
        assert_eq!(
            verify_link(b"k", &format!("{p}.{tag}"), 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify_link(b"k", "garbage", 0),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn the_derived_key_depends_on_the_signing_key() {
        assert_ne!(link_key(None, b"a"), link_key(None, b"b"));
        assert_eq!(link_key(Some("s"), b"a"), b"s".to_vec());
    }
}
