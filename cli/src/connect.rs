//! `sluice connect TARGET`: a loopback listener that lets GUI tools and ORMs
//! reach a target with no secret at all. Each client's startup is rewritten
//! for the target and sent to the gateway, the stored token answers the
//! gateway's password request, and from then on bytes flow unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::login::{self, StoredToken};
use crate::output;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3: i32 = 196_608;
const MAX_STARTUP: usize = 10_000;

/// Arguments of `sluice connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The target to reach (the gateway's database name for it).
    pub target: String,
    /// The gateway's Postgres address.
    #[arg(long, env = "SLUICE_GATEWAY", default_value = "127.0.0.1:6432")]
    pub gateway: String,
    /// Where local clients connect (loopback only).
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub listen: SocketAddr,
    /// A CA certificate (PEM) for the gateway's TLS certificate, besides the
    /// system roots.
    #[arg(long, env = "SLUICE_GATEWAY_CA")]
    pub gateway_ca: Option<PathBuf>,
    /// The token file `sluice login` wrote.
    #[arg(long, env = "SLUICE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Why a client's startup cannot be rewritten.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    /// Parameters not NUL-terminated pairs.
    #[error("malformed startup message")]
    Malformed,
}

/// The startup parameters of a protocol 3.0 startup body (after the
/// version), with `database` forced to `target` (pure).
pub fn rewrite_startup(params: &[u8], target: &str) -> Result<Vec<u8>, StartupError> {
    let mut fields = params.split(|b| *b == 0);
    let mut out = Vec::with_capacity(params.len() + target.len() + 16);
    out.extend_from_slice(&PROTOCOL_3.to_be_bytes());
    loop {
        let key = fields.next().ok_or(StartupError::Malformed)?;
        if key.is_empty() {
            break;
        }
        let value = fields.next().ok_or(StartupError::Malformed)?;
        if key == b"database" {
            continue;
        }
        for part in [key, value] {
            out.extend_from_slice(part);
            out.push(0);
        }
    }
    out.extend_from_slice(b"database\0");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b"\0\0");
    let len = i32::try_from(out.len() + 4).map_err(|_| StartupError::Malformed)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&out);
    Ok(framed)
}

/// A fatal ErrorResponse for the local client.
fn error_frame(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(tag);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    frame(b'E', &body)
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(
        &i32::try_from(body.len() + 4)
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Serves local clients until interrupted.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!("--listen must be a loopback address: anyone reaching it would act with your token");
    }
    // Fail early if there is no token at all.
    login::load(args.token_file.as_deref())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    output::stdout(&format!(
        "Listening on {local} for target {}: connect with postgres://{local}/{}\n",
        args.target, args.target
    ));
    let args = Arc::new(args);
    loop {
        let (client, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let args = args.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(client, &args).await {
                tracing::info!(error = %e, "local connection ended");
            }
        });
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn serve(mut client: TcpStream, args: &ConnectArgs) -> anyhow::Result<()> {
    let Some((code, body)) = read_startup(&mut client).await? else {
        return Ok(());
    };
    let mut gateway = open_gateway(args).await?;
    if code == CANCEL_REQUEST {
        let mut raw = 16_i32.to_be_bytes().to_vec();
        raw.extend_from_slice(&code.to_be_bytes());
        raw.extend_from_slice(&body);
        gateway.write_all(&raw).await?;
        return Ok(());
    }
    let token = match usable_token(args) {
        Ok(t) => t,
        Err(why) => {
            client.write_all(&error_frame("28000", &why)).await?;
            return Ok(());
        }
    };
    let startup = match rewrite_startup(&body, &args.target) {
        Ok(s) => s,
        Err(e) => {
            client
                .write_all(&error_frame("08P01", &e.to_string()))
                .await?;
            return Ok(());
        }
    };
    gateway.write_all(&startup).await?;
    // The gateway asks for the password (cleartext, over TLS): answer with
    // the token; anything else goes to the client as is.
    let mut head = [0_u8; 5];
    gateway.read_exact(&mut head).await?;
    let len = usize::try_from(i32::from_be_bytes([head[1], head[2], head[3], head[4]]))
        .unwrap_or(0)
        .saturating_sub(4);
    let mut rest = vec![0_u8; len.min(1 << 20)];
    gateway.read_exact(&mut rest).await?;
    if head[0] == b'R' && rest == 3_i32.to_be_bytes() {
        let mut pw = token.access_token.into_bytes();
        pw.push(0);
        gateway.write_all(&frame(b'p', &pw)).await?;
    } else {
        client.write_all(&head).await?;
        client.write_all(&rest).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut gateway).await?;
    Ok(())
}

/// The stored token, unless it is missing or expired.
fn usable_token(args: &ConnectArgs) -> Result<StoredToken, String> {
    let token = login::load(args.token_file.as_deref()).map_err(|e| format!("{e:#}"))?;
    if token.expires_at != 0 && token.expires_at <= login::now_secs() {
        return Err("your sign-in has expired: run `sluice login` again".to_owned());
    }
    Ok(token)
}

/// Reads the client's startup message, declining TLS and GSS encryption
/// (the connection is on loopback). `None` if the client left.
async fn read_startup(client: &mut TcpStream) -> anyhow::Result<Option<(i32, Vec<u8>)>> {
    for _ in 0..3 {
        let mut head = [0_u8; 8];
        if client.read_exact(&mut head).await.is_err() {
            return Ok(None);
        }
        let len =
            usize::try_from(i32::from_be_bytes([head[0], head[1], head[2], head[3]])).unwrap_or(0);
        let code = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if !(8..=MAX_STARTUP).contains(&len) {
            bail!("startup message of {len} bytes refused");
        }
        let mut body = vec![0_u8; len - 8];
        client.read_exact(&mut body).await?;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => client.write_all(b"N").await?,
            PROTOCOL_3 | CANCEL_REQUEST => return Ok(Some((code, body))),
            _ => {
                client
                    .write_all(&error_frame("08P01", "unsupported frontend protocol"))
                    .await?;
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// Connects to the gateway, with TLS when it offers it. Plaintext is only
/// accepted to a loopback gateway, so the token never crosses a network in
/// the clear.
async fn open_gateway(args: &ConnectArgs) -> anyhow::Result<Box<dyn Stream>> {
    let mut tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&args.gateway))
        .await
        .context("the gateway did not answer in time")?
        .with_context(|| format!("cannot reach the gateway at {}", args.gateway))?;
    tcp.set_nodelay(true)?;
    let mut req = 8_i32.to_be_bytes().to_vec();
    req.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    tcp.write_all(&req).await?;
    let mut answer = [0_u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] == b'S' {
        let host = args
            .gateway
            .rsplit_once(':')
            .map_or(args.gateway.as_str(), |(h, _)| h);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = rustls::pki_types::ServerName::try_from(host)
            .context("the gateway address is not a valid TLS name")?;
        let config = sluice_common::tls::client_config(args.gateway_ca.as_deref())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .context("TLS with the gateway failed (use --gateway-ca for a private CA)")?;
        return Ok(Box::new(tls));
    }
    if !tcp.peer_addr()?.ip().is_loopback() {
        bail!("the gateway does not offer TLS; refusing to send the token in plaintext");
    }
    Ok(Box::new(tcp))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_database_is_forced_to_the_target() {
        let params = b"user\0ada\0database\0other\0application_name\0dbeaver\0\0";
        let out = rewrite_startup(params, "demo").unwrap();
        let len = i32::from_be_bytes(out[0..4].try_into().unwrap());
        assert_eq!(usize::try_from(len).unwrap(), out.len());
        let text = String::from_utf8_lossy(&out[8..]);
        assert!(
            text.contains("user\0ada\0application_name\0dbeaver\0database\0demo\0\0"),
            "{text:?}"
        );
        assert!(!text.contains("other"));
    }

    #[test]
    fn malformed_parameters_are_refused() {
        assert_eq!(
            rewrite_startup(b"user\0ada", "demo"),
            Err(StartupError::Malformed)
        );
        assert_eq!(
            rewrite_startup(b"user", "demo"),
            Err(StartupError::Malformed)
        );
    }

    #[test]
    fn error_frames_are_well_formed() {
        let f = error_frame("28000", "no");
        assert_eq!(f[0], b'E');
        let len = i32::from_be_bytes(f[1..5].try_into().unwrap());
        assert_eq!(usize::try_from(len).unwrap(), f.len() - 1);
    }
}
