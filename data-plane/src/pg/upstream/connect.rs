//! Opens an authenticated connection to a target as the gateway.

use std::sync::Arc;
use std::time::Duration;

use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use rustls::pki_types::ServerName;
use sluice_proto::v1;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::pg::codec::backend::{self, AuthRequest};
use crate::pg::codec::frame::Frame;
use crate::pg::codec::startup;
use crate::pg::io::{FrameReader, ReadError};
use crate::pg::stream::MaybeTls;

/// Why a target could not be reached. Logged in full; the client only learns
/// that the target is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed or timed out.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Connecting took too long.
    #[error("connect to {0}: timed out")]
    Timeout(String),
    /// The target refused TLS where it is required.
    #[error("target refused TLS (tls_mode {0})")]
    TlsRefused(String),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    /// The target asked for an authentication method we do not speak.
    #[error("unsupported authentication method {0}")]
    UnsupportedAuth(i32),
    /// SCRAM failed.
    #[error("SCRAM: {0}")]
    Scram(std::io::Error),
    /// The target sent an error.
    #[error("target error {code}: {message}")]
    Server {
        /// SQLSTATE.
        code: String,
        /// Message.
        message: String,
    },
    /// The target broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// An authenticated upstream connection, ready for queries.
#[derive(Debug)]
pub struct Upstream {
    /// The stream and anything already buffered from it.
    pub reader: FrameReader<MaybeTls>,
    /// The backend's process id (for cancel requests).
    pub pid: i32,
    /// The backend's cancel secret.
    pub secret: Vec<u8>,
    /// ParameterStatus values reported during startup.
    pub params: Vec<(String, String)>,
}

/// Limits for the upstream connection.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    /// Connect and startup time limit.
    pub connect_timeout: Duration,
    /// Largest message accepted from the target.
    pub max_message: usize,
    /// Longest stall mid-message.
    pub stall: Duration,
}

/// Connects and authenticates to `target`, forwarding `params`.
pub async fn connect(
    target: &v1::Target,
    params: &[(String, String)],
    limits: UpstreamLimits,
) -> Result<Upstream, UpstreamError> {
    let addr = format!("{}:{}", target.host, target.port);
    tokio::time::timeout(limits.connect_timeout, async {
        let stream = open(target, &addr).await?;
        startup_and_auth(stream, target, params, limits).await
    })
    .await
    .map_err(|_| UpstreamError::Timeout(addr.clone()))?
}

/// Opens TCP and, as `tls_mode` says, TLS.
pub async fn open(target: &v1::Target, addr: &str) -> Result<MaybeTls, UpstreamError> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let mode = target.tls_mode.as_str();
    if mode == "disable" {
        return Ok(MaybeTls::Plain(tcp));
    }
    tcp.write_all(&startup::encode_ssl_request()).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match (answer[0], mode) {
        (b'S', _) => {}
        (b'N', "prefer") => return Ok(MaybeTls::Plain(tcp)),
        (b'N', _) => return Err(UpstreamError::TlsRefused(mode.to_owned())),
        (other, _) => {
            return Err(UpstreamError::Protocol(format!(
                "unexpected SSL answer {other}"
            )));
        }
    }
    let config: Arc<rustls::ClientConfig> = if mode == "verify-full" {
        sluice_common::tls::client_config(None)
            .map_err(|e| UpstreamError::Tls(std::io::Error::other(e)))?
    } else {
        sluice_common::tls::client_config_unverified()
    };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| UpstreamError::Protocol(format!("invalid TLS server name {}", target.host)))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(UpstreamError::Tls)?;
    Ok(MaybeTls::Client(Box::new(tls)))
}

async fn startup_and_auth(
    stream: MaybeTls,
    target: &v1::Target,
    params: &[(String, String)],
    limits: UpstreamLimits,
) -> Result<Upstream, UpstreamError> {
    let mut reader = FrameReader::new(stream, limits.max_message, limits.stall);
    let mut startup_params: Vec<(&str, &str)> = vec![
        ("user", target.username.as_str()),
        ("database", target.database.as_str()),
    ];
    startup_params.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    reader
        .get_mut()
        .write_all(&startup::encode_startup(&startup_params))
        .await?;
    authenticate(&mut reader, target).await?;
    let mut out = Upstream {
        reader,
        pid: 0,
        secret: Vec::new(),
        params: Vec::new(),
    };
    loop {
        let f = next(&mut out.reader).await?;
        match f.tag() {
            b'S' => {
                if let Some((k, v)) = backend::parse_parameter_status(f.body()) {
                    out.params.push((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
            }
            b'K' => {
                let body = f.body();
                if body.len() < 8 {
                    return Err(UpstreamError::Protocol("short BackendKeyData".into()));
                }
                out.pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                out.secret = body[4..].to_vec();
            }
            b'Z' => return Ok(out),
            b'N' => {}
            b'E' => return Err(server_error(&f)),
            t => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message {:?} during startup",
                    t as char
                )));
            }
        }
    }
}

async fn authenticate(
    reader: &mut FrameReader<MaybeTls>,
    target: &v1::Target,
) -> Result<(), UpstreamError> {
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = next(reader).await?;
        if f.tag() == b'E' {
            return Err(server_error(&f));
        }
        if f.tag() != b'R' {
            return Err(UpstreamError::Protocol(format!(
                "expected authentication, got {:?}",
                f.tag() as char
            )));
        }
        let req = backend::auth_request(f.body())
            .ok_or_else(|| UpstreamError::Protocol("bad authentication message".into()))?;
        let reply = match req {
            AuthRequest::Ok => return Ok(()),
            AuthRequest::Cleartext => password_message(target.password.as_bytes()),
            AuthRequest::Md5(salt) => {
                let hash = postgres_protocol::authentication::md5_hash(
                    target.username.as_bytes(),
                    target.password.as_bytes(),
                    salt,
                );
                password_message(hash.as_bytes())
            }
            AuthRequest::Sasl(mechs) => {
                if !mechs.contains(&SCRAM_SHA_256.as_bytes()) {
                    return Err(UpstreamError::Protocol(
                        "target offers no SCRAM-SHA-256".into(),
                    ));
                }
                let s = ScramSha256::new(target.password.as_bytes(), ChannelBinding::unsupported());
                let mut body = Vec::new();
                body.extend_from_slice(SCRAM_SHA_256.as_bytes());
                body.push(0);
                body.extend_from_slice(
                    &i32::try_from(s.message().len()).unwrap_or(0).to_be_bytes(),
                );
                body.extend_from_slice(s.message());
                scram = Some(s);
                Frame::new(b'p', &body)
            }
            AuthRequest::SaslContinue(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("SASL continue before start".into()))?;
                s.update(data).map_err(UpstreamError::Scram)?;
                Frame::new(b'p', s.message())
            }
            AuthRequest::SaslFinal(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("SASL final before start".into()))?;
                s.finish(data).map_err(UpstreamError::Scram)?;
                continue;
            }
            AuthRequest::Other(code) => return Err(UpstreamError::UnsupportedAuth(code)),
        };
        reader.get_mut().write_all(&reply.raw).await?;
    }
}

fn password_message(pw: &[u8]) -> Frame {
    let mut body = pw.to_vec();
    body.push(0);
    Frame::new(b'p', &body)
}

pub(crate) async fn next(reader: &mut FrameReader<MaybeTls>) -> Result<Frame, UpstreamError> {
    reader.next().await?.ok_or_else(|| {
        UpstreamError::Protocol("target closed the connection during startup".into())
    })
}

pub(crate) fn server_error(f: &Frame) -> UpstreamError {
    let field = |t| {
        String::from_utf8_lossy(backend::error_field(f.body(), t).unwrap_or_default()).into_owned()
    };
    UpstreamError::Server {
        code: field(b'C'),
        message: field(b'M'),
    }
}
