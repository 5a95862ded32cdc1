//! A raw Postgres wire-protocol client over plain TCP, for tests that must
//! send what no well-behaved driver would (truncated, oversized or garbage
//! messages) or see exactly which messages the gateway answers with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Protocol version 3.0, as sent in a startup packet.
pub const PROTOCOL_3_0: u32 = 196_608;
/// The request code of a CancelRequest.
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// One backend message: its type byte and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Message type (`E`, `R`, `Z`, ...).
    pub tag: u8,
    /// Everything after the length.
    pub body: Vec<u8>,
}

impl Msg {
    /// The fields of an ErrorResponse or NoticeResponse, by field type.
    pub fn fields(&self) -> HashMap<u8, String> {
        let mut out = HashMap::new();
        let mut b = self.body.as_slice();
        while let Some((&t, rest)) = b.split_first() {
            if t == 0 {
                break;
            }
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            out.insert(t, String::from_utf8_lossy(&rest[..end]).into_owned());
            b = rest.get(end + 1..).unwrap_or_default();
        }
        out
    }

    /// The authentication request code of an `R` message.
    pub fn auth_code(&self) -> Option<i32> {
        (self.tag == b'R')
            .then(|| self.body.get(..4)?.try_into().ok().map(i32::from_be_bytes))
            .flatten()
    }
}

/// How a connection answered something it should refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An ErrorResponse (then, usually, the connection closed).
    Error {
        /// `ERROR` or `FATAL`.
        severity: String,
        /// SQLSTATE.
        code: String,
        /// Primary message.
        message: String,
        /// Whether the connection was closed right after it.
        closed: bool,
    },
    /// The connection closed without an ErrorResponse.
    Closed,
}

impl Refusal {
    /// The SQLSTATE, if an ErrorResponse came.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Error { code, .. } => Some(code),
            Self::Closed => None,
        }
    }
}

/// Builds a tagged message from its type and body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(
        &u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// A Query message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// An untagged first packet: its length, then `body`.
pub fn untagged(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 4)
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

/// A startup packet for protocol `version` with `params`.
pub fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    untagged(&body)
}

/// A CancelRequest for (pid, secret).
pub fn cancel_request(pid: i32, secret: i32) -> Vec<u8> {
    let mut body = CANCEL_REQUEST.to_be_bytes().to_vec();
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend_from_slice(&secret.to_be_bytes());
    untagged(&body)
}

/// A PasswordMessage.
pub fn password(pw: &str) -> Vec<u8> {
    let mut body = pw.as_bytes().to_vec();
    body.push(0);
    message(b'p', &body)
}

/// A raw connection.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What the gateway sent while a session was being opened.
#[derive(Debug)]
pub struct Session {
    /// The connection, ready for queries.
    pub wire: Wire,
    /// BackendKeyData's process id.
    pub pid: i32,
    /// BackendKeyData's secret.
    pub secret: i32,
}

impl Wire {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads raw bytes (at most `max`), waiting up to `wait`; empty at end
    /// of stream.
    pub async fn read_some(&mut self, max: usize, wait: Duration) -> anyhow::Result<Vec<u8>> {
        let mut chunk = vec![0u8; max];
        let n = tokio::time::timeout(wait, self.stream.read(&mut chunk))
            .await
            .context("timed out reading")??;
        chunk.truncate(n);
        Ok(chunk)
    }

    /// The next message, waiting up to `wait`; `None` once the connection
    /// has closed (an error such as a reset counts as closed too).
    pub async fn recv(&mut self, wait: Duration) -> anyhow::Result<Option<Msg>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let size = len as usize + 1;
                if len < 4 {
                    bail!("server sent a message with length {len}");
                }
                if self.buf.len() >= size {
                    let raw: Vec<u8> = self.buf.drain(..size).collect();
                    return Ok(Some(Msg {
                        tag: raw[0],
                        body: raw[5..].to_vec(),
                    }));
                }
            }
            self.buf.reserve(16 * 1024);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .with_context(|| format!("no complete message within {wait:?}"))?;
            if matches!(read, Ok(0) | Err(_)) {
                return Ok(None);
            }
        }
    }

    /// Every message until ReadyForQuery (included) or the connection closes.
    pub async fn until_ready(&mut self, wait: Duration) -> anyhow::Result<Vec<Msg>> {
        let mut out = Vec::new();
        while let Some(m) = self.recv(wait).await? {
            let ready = m.tag == b'Z';
            out.push(m);
            if ready {
                break;
            }
        }
        Ok(out)
    }

    /// Waits up to `wait` for the connection to refuse: the first
    /// ErrorResponse (noting whether the connection then closed), or the
    /// close itself. Anything else that arrives first is an error.
    pub async fn refusal(&mut self, wait: Duration) -> anyhow::Result<Refusal> {
        let Some(m) = self.recv(wait).await? else {
            return Ok(Refusal::Closed);
        };
        if m.tag != b'E' {
            bail!(
                "expected an ErrorResponse or a close, got message {:?}",
                m.tag as char
            );
        }
        let f = m.fields();
        let closed = matches!(self.recv(Duration::from_secs(5)).await, Ok(None));
        Ok(Refusal::Error {
            severity: f.get(&b'S').cloned().unwrap_or_default(),
            code: f.get(&b'C').cloned().unwrap_or_default(),
            message: f.get(&b'M').cloned().unwrap_or_default(),
            closed,
        })
    }

    /// Sends a startup packet and the token, and reads up to the first
    /// ReadyForQuery; fails unless the session opened.
    pub async fn login(
        addr: SocketAddr,
        token: &str,
        database: &str,
        application_name: &str,
    ) -> anyhow::Result<Session> {
        let mut wire = Self::connect(addr).await?;
        wire.send(&startup_packet(
            PROTOCOL_3_0,
            &[
                ("user", "agent"),
                ("database", database),
                ("application_name", application_name),
            ],
        ))
        .await?;
        let ask = wire
            .recv(Duration::from_secs(10))
            .await?
            .context("closed before asking for a password")?;
        anyhow::ensure!(
            ask.auth_code() == Some(3),
            "expected a cleartext password request, got {ask:?}"
        );
        wire.send(&password(token)).await?;
        let mut key = None;
        for m in wire.until_ready(Duration::from_secs(20)).await? {
            match m.tag {
                b'K' => {
                    let b = &m.body;
                    key = Some((
                        i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    ));
                }
                b'E' => bail!("login refused: {:?}", m.fields().get(&b'M')),
                _ => {}
            }
        }
        let (pid, secret) = key.context("no BackendKeyData before ReadyForQuery")?;
        Ok(Session { wire, pid, secret })
    }

    /// Runs a simple query and returns every message up to ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> anyhow::Result<Vec<Msg>> {
        self.send(&query(sql)).await?;
        self.until_ready(Duration::from_secs(30)).await
    }
}
