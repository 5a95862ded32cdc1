//! From a fresh TCP connection to an authenticated client: SSL negotiation,
//! the startup packet, and the access token sent as the password.

use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::pg::codec::backend;
use crate::pg::codec::frontend;
use crate::pg::codec::startup::StartupPacket;
use crate::pg::error::{ClientError, sqlstate};
use crate::pg::io::{FrameReader, ReadError};
use crate::pg::stream::MaybeTls;

/// What the handshake needs to know.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// TLS for clients that ask; `None` declines SSLRequest.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whether clients may skip TLS.
    pub allow_plaintext: bool,
    /// Largest client message.
    pub max_message: usize,
    /// Longest stall mid-message.
    pub stall: std::time::Duration,
    /// Longest time from connecting to having sent the token, however the
    /// client spends it (a client that never sends its password included).
    pub startup: std::time::Duration,
}

/// Startup parameters forwarded to the target. Anything that could change
/// how the server parses or authorises (`options`, `search_path`,
/// `replication`, protocol extensions) is not on this list.
const FORWARDED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
];

/// A client that has sent its startup packet and token.
#[derive(Debug)]
pub struct Hello {
    /// The stream, with anything the client sent after its password.
    pub reader: FrameReader<MaybeTls>,
    /// `user` as sent (informational: the token says who it is).
    pub user: String,
    /// `database`: the target's name.
    pub database: String,
    /// Parameters to forward upstream (lower-case names).
    pub forward: Vec<(String, String)>,
    /// The access token.
    pub token: String,
}

/// What a connection turned out to be.
#[derive(Debug)]
pub enum Handshake {
    /// A client that wants a session.
    Session(Box<Hello>),
    /// A cancel request for another connection's query.
    Cancel {
        /// Process id.
        pid: i32,
        /// Secret.
        secret: Vec<u8>,
    },
    /// The client went away before saying anything.
    Gone,
}

/// Why a handshake failed: what to log, and what (if anything) to tell the client.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Reading failed; the connection is unusable.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client gets this error, then the connection closes.
    #[error("refused: {}", .0.message)]
    Refused(ClientError),
}

impl HandshakeError {
    /// The error to send the client, if it can still receive one.
    pub fn client_error(&self) -> Option<ClientError> {
        match self {
            Self::Refused(e) => Some(e.clone()),
            Self::Read(ReadError::Startup(e)) => Some(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                e.to_string(),
            )),
            Self::Read(ReadError::Frame(e)) => Some(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                e.to_string(),
            )),
            Self::Read(ReadError::Stalled(_)) => Some(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "timed out waiting for the client during startup",
            )),
            _ => None,
        }
    }
}

fn refuse(code: &'static str, message: impl Into<String>) -> HandshakeError {
    HandshakeError::Refused(ClientError::fatal(code, message))
}

/// What the handshake learned, before the stream is handed over.
enum Outcome {
    Session {
        user: String,
        database: String,
        forward: Vec<(String, String)>,
        token: String,
    },
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    Gone,
}

/// Runs the handshake up to (not including) authentication success. When
/// it fails, the client has already been sent the reason (if it can still
/// receive one).
pub async fn handshake(tcp: TcpStream, cfg: &HandshakeConfig) -> Result<Handshake, HandshakeError> {
    let mut reader = FrameReader::new(MaybeTls::Plain(tcp), cfg.max_message, cfg.stall);
    let outcome = tokio::time::timeout(cfg.startup, run(&mut reader, cfg))
        .await
        .unwrap_or(Err(HandshakeError::Read(ReadError::Stalled(cfg.startup))));
    match outcome {
        Ok(Outcome::Session {
            user,
            database,
            forward,
            token,
        }) => Ok(Handshake::Session(Box::new(Hello {
            reader,
            user,
            database,
            forward,
            token,
        }))),
        Ok(Outcome::Cancel { pid, secret }) => Ok(Handshake::Cancel { pid, secret }),
        Ok(Outcome::Gone) => Ok(Handshake::Gone),
        Err(e) => {
            if let Some(ce) = e.client_error() {
                let w = reader.get_mut();
                let _ = w.write_all(&ce.frame().raw).await;
                let _ = w.flush().await;
            }
            Err(e)
        }
    }
}

async fn run(
    reader: &mut FrameReader<MaybeTls>,
    cfg: &HandshakeConfig,
) -> Result<Outcome, HandshakeError> {
    let mut negotiated = false;
    let (minor, params) = loop {
        let Some(packet) = reader.startup().await? else {
            return Ok(Outcome::Gone);
        };
        match packet {
            StartupPacket::SslRequest if !negotiated => {
                negotiated = true;
                negotiate_tls(reader, cfg).await?;
            }
            StartupPacket::GssEncRequest if !negotiated => {
                negotiated = true;
                reader.get_mut().write_all(b"N").await?;
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                return Err(refuse(
                    sqlstate::PROTOCOL_VIOLATION,
                    "encryption was already negotiated",
                ));
            }
            StartupPacket::Cancel { pid, secret } => return Ok(Outcome::Cancel { pid, secret }),
            StartupPacket::Startup { minor, params, .. } => break (minor, params),
        }
    };
    if !reader.get_mut().is_tls() && !cfg.allow_plaintext {
        return Err(HandshakeError::Refused(
            ClientError::fatal(sqlstate::INVALID_AUTHORIZATION, "this gateway requires TLS")
                .with_hint("connect with sslmode=require"),
        ));
    }
    let Params {
        user,
        database,
        forward,
    } = check_params(params)?;
    if minor > 0 {
        // Protocol 3.x with x > 0: answer that 3.0 is what we speak.
        let f = backend::negotiate_protocol_version(0, &[]);
        reader.get_mut().write_all(&f.raw).await?;
    }
    reader
        .get_mut()
        .write_all(&backend::auth_cleartext().raw)
        .await?;
    reader.get_mut().flush().await?;
    let token = match reader.next().await? {
        Some(f) if f.tag() == b'p' => {
            let pw = frontend::password(f.body())
                .map_err(|e| refuse(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            String::from_utf8(pw.to_vec())
                .map_err(|_| refuse(sqlstate::INVALID_PASSWORD, "the access token is malformed"))?
        }
        Some(_) => {
            return Err(refuse(
                sqlstate::PROTOCOL_VIOLATION,
                "expected a password message",
            ));
        }
        None => return Ok(Outcome::Gone),
    };
    Ok(Outcome::Session {
        user,
        database,
        forward,
        token,
    })
}

async fn negotiate_tls(
    reader: &mut FrameReader<MaybeTls>,
    cfg: &HandshakeConfig,
) -> Result<(), HandshakeError> {
    let Some(acceptor) = &cfg.tls else {
        reader.get_mut().write_all(b"N").await?;
        return Ok(());
    };
    // Bytes after SSLRequest but before the handshake would be read as if
    // they had been encrypted (CVE-2021-23214): refuse.
    if reader.has_buffered() {
        return Err(refuse(
            sqlstate::PROTOCOL_VIOLATION,
            "unexpected data after SSLRequest",
        ));
    }
    let MaybeTls::Plain(mut tcp) = std::mem::replace(reader.get_mut(), MaybeTls::Closed) else {
        return Err(refuse(
            sqlstate::PROTOCOL_VIOLATION,
            "encryption was already negotiated",
        ));
    };
    tcp.write_all(b"S").await?;
    let tls = tokio::time::timeout(cfg.stall, acceptor.accept(tcp))
        .await
        .map_err(|_| ReadError::Stalled(cfg.stall))??;
    *reader.get_mut() = MaybeTls::Server(Box::new(tls));
    Ok(())
}

/// The startup parameters that matter.
#[derive(Debug)]
struct Params {
    user: String,
    database: String,
    forward: Vec<(String, String)>,
}

fn check_params(params: Vec<(String, String)>) -> Result<Params, HandshakeError> {
    let mut user = None;
    let mut database = None;
    let mut forward = Vec::new();
    for (name, value) in params {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "user" => user = Some(value),
            "database" => database = Some(value),
            "options" | "replication" => {
                return Err(HandshakeError::Refused(
                    ClientError::fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("startup parameter \"{name}\" is not allowed through this gateway"),
                    )
                    .with_hint("remove it from the connection string; set session parameters with SET instead"),
                ));
            }
            "client_encoding"
                if !value.eq_ignore_ascii_case("utf8") && !value.eq_ignore_ascii_case("utf-8") =>
            {
                return Err(refuse(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("client_encoding {value} is not supported; use UTF8"),
                ));
            }
            n if n.starts_with("_pq_.") => {
                return Err(refuse(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("protocol option {name} is not supported"),
                ));
            }
            n if FORWARDED.contains(&n) => forward.push((lower, value)),
            _ => tracing::debug!(parameter = %name, "startup parameter dropped"),
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        refuse(
            sqlstate::INVALID_AUTHORIZATION,
            "no user name given in the startup packet",
        )
    })?;
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(Params {
        user,
        database,
        forward,
    })
}

/// Builds the TLS acceptor for the client listener.
pub fn acceptor(config: Arc<rustls::ServerConfig>) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn allowlisted_parameters_are_forwarded_and_others_dropped() {
        let Params {
            user,
            database: db,
            forward: fwd,
        } = check_params(p(&[
            ("user", "agent"),
            ("database", "demo"),
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("search_path", "evil"),
        ]))
        .unwrap();
        assert_eq!((user.as_str(), db.as_str()), ("agent", "demo"));
        assert_eq!(
            fwd,
            p(&[("application_name", "psql"), ("datestyle", "ISO")])
        );
    }

    #[test]
    fn dangerous_parameters_are_refused() {
        for bad in [
            ("options", "-c role=admin"),
            ("replication", "database"),
            ("_pq_.x", "1"),
            ("client_encoding", "LATIN1"),
        ] {
            let err = check_params(p(&[("user", "a"), bad])).unwrap_err();
            assert!(err.client_error().is_some(), "{bad:?}");
        }
        assert!(
            check_params(p(&[("database", "demo")])).is_err(),
            "user is required"
        );
    }

    fn config(startup: std::time::Duration) -> HandshakeConfig {
        HandshakeConfig {
            tls: None,
            allow_plaintext: true,
            max_message: 1 << 20,
            stall: std::time::Duration::from_secs(30),
            startup,
        }
    }

    #[tokio::test]
    async fn a_client_that_never_sends_its_token_is_cut_off() {
        use tokio::io::AsyncReadExt as _;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client
            .write_all(&crate::pg::codec::startup::encode_startup(&[("user", "a")]))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = handshake(server, &config(std::time::Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HandshakeError::Read(ReadError::Stalled(_))),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The client was asked for its password, then told why it was dropped.
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got[0], b'R');
        assert_eq!(got[9], b'E', "{got:?}");
    }

    #[test]
    fn database_defaults_to_the_user_name() {
        let params = check_params(p(&[("user", "demo")])).unwrap();
        assert_eq!(params.database, "demo");
    }
}
