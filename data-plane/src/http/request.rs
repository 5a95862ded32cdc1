//! The request body. A body that fits what the gateway holds for
//! inspection (`max_request_body_bytes`) is read whole: the decision, the
//! approval hash and the audit sample cover all of it. A larger one is read
//! up to that size, and then, if the decision does not rest on the body and
//! needs no approval, streamed to the upstream chunk by chunk as it arrives
//! (up to `max_streamed_body_bytes`), never held whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::http::request::Parts;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;

use super::HttpLimits;
use super::problem::GatewayError;

/// A request body as far as it has been read.
#[derive(Debug)]
pub enum Incoming {
    /// All of it.
    Whole(Bytes),
    /// Its first bytes (more than the gateway holds), and the rest still
    /// arriving.
    Streaming {
        /// What has been read.
        head: Bytes,
        /// The rest.
        rest: Body,
        /// The length the client declared, if it did.
        declared: Option<u64>,
    },
}

/// Reads a request body within the limits: whole when it fits what the
/// gateway holds, or its head when it is larger (and streaming is allowed).
pub async fn read(
    limits: &HttpLimits,
    parts: &Parts,
    mut body: Body,
) -> Result<Incoming, GatewayError> {
    let held = limits.max_request_body_bytes;
    let streamed = limits.max_streamed_body_bytes.max(held as u64);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > streamed) {
        return Err(GatewayError::BodyTooLarge(
            usize::try_from(streamed).unwrap_or(usize::MAX),
        ));
    }
    let mut buf = BytesMut::new();
    let reading = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| unreadable())?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > held {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    let whole = match tokio::time::timeout(limits.request_body_timeout, reading).await {
        Err(_) => {
            return Err(GatewayError::BodyTimeout(
                limits.request_body_timeout.as_secs(),
            ));
        }
        Ok(r) => r?,
    };
    if whole {
        return Ok(Incoming::Whole(buf.freeze()));
    }
    if streamed <= held as u64 {
        return Err(GatewayError::BodyTooLarge(held));
    }
    Ok(Incoming::Streaming {
        head: buf.freeze(),
        rest: body,
        declared,
    })
}

fn unreadable() -> GatewayError {
    GatewayError::BadRequest("the request body could not be read".to_owned())
}

// Why a streamed body stopped before its end (0: it did not).
const TOO_LARGE: u8 = 1;
const STALLED: u8 = 2;
const BROKEN: u8 = 3;

/// What a streamed upload did: bytes sent so far, and why it stopped early.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    sent: Arc<AtomicU64>,
    stopped: Arc<AtomicU8>,
}

impl Upload {
    /// Bytes of the body sent to the upstream.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The client's side of a failed upload, when the client (not the
    /// upstream) made it fail.
    pub fn failure(&self, limits: &HttpLimits) -> Option<GatewayError> {
        match self.stopped.load(Ordering::Relaxed) {
            TOO_LARGE => Some(GatewayError::BodyTooLarge(
                usize::try_from(limits.max_streamed_body_bytes).unwrap_or(usize::MAX),
            )),
            STALLED => Some(GatewayError::BodyTimeout(
                limits.request_body_timeout.as_secs(),
            )),
            BROKEN => Some(unreadable()),
            _ => None,
        }
    }
}

struct Stream {
    head: Option<Bytes>,
    rest: Body,
    max: u64,
    stall: Duration,
    upload: Upload,
    done: bool,
}

impl Stream {
    fn stop(&mut self, why: u8) -> std::io::Error {
        self.done = true;
        self.upload.stopped.store(why, Ordering::Relaxed);
        std::io::Error::other("the request body stopped early")
    }

    fn count(&mut self, data: &Bytes) -> Result<(), std::io::Error> {
        let sent = self.upload.sent.load(Ordering::Relaxed) + data.len() as u64;
        if sent > self.max {
            return Err(self.stop(TOO_LARGE));
        }
        self.upload.sent.store(sent, Ordering::Relaxed);
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        if let Some(head) = self.head.take() {
            return Some(self.count(&head).map(|()| head));
        }
        loop {
            match tokio::time::timeout(self.stall, self.rest.frame()).await {
                Err(_) => return Some(Err(self.stop(STALLED))),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return Some(Err(self.stop(BROKEN))),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(self.count(&data).map(|()| data));
                    }
                }
            }
        }
    }
}

/// The upstream body of a streamed request: the head, then the rest as it
/// arrives, each chunk within the stall limit, the whole within the
/// streamed size limit. `upload` tells afterwards how far it got.
pub fn upstream_body(
    head: Bytes,
    rest: Body,
    limits: &HttpLimits,
    upload: &Upload,
) -> reqwest::Body {
    let s = Stream {
        head: Some(head),
        rest,
        max: limits.max_streamed_body_bytes,
        stall: limits.request_body_timeout,
        upload: upload.clone(),
        done: false,
    };
    reqwest::Body::wrap_stream(futures::stream::unfold(s, |mut s| async move {
        s.next().await.map(|item| (item, s))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(held: usize, streamed: u64) -> HttpLimits {
        HttpLimits {
            max_request_body_bytes: held,
            max_streamed_body_bytes: streamed,
            ..HttpLimits::default()
        }
    }

    fn parts(len: Option<usize>) -> Parts {
        let mut b = axum::http::Request::builder().method("POST").uri("/x");
        if let Some(n) = len {
            b = b.header(header::CONTENT_LENGTH, n.to_string());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn chunked(chunks: usize, size: usize) -> Body {
        let s =
            futures::stream::iter((0..chunks).map(move |i| {
                Ok::<_, std::io::Error>(Bytes::from(vec![b'a' + (i % 26) as u8; size]))
            }));
        Body::from_stream(s)
    }

    #[tokio::test]
    async fn small_bodies_are_read_whole_and_large_ones_stream() {
        let l = limits(100, 1000);
        match read(&l, &parts(None), chunked(3, 30)).await.unwrap() {
            Incoming::Whole(b) => assert_eq!(b.len(), 90),
            other => panic!("{other:?}"),
        }
        let Incoming::Streaming { head, rest, .. } =
            read(&l, &parts(None), chunked(10, 30)).await.unwrap()
        else {
            panic!("not streamed");
        };
        assert_eq!(head.len(), 120, "read up to the first chunk past the limit");
        let upload = Upload::default();
        let mut s = Stream {
            head: Some(head),
            rest,
            max: l.max_streamed_body_bytes,
            stall: Duration::from_secs(5),
            upload: upload.clone(),
            done: false,
        };
        let mut all = Vec::new();
        while let Some(c) = s.next().await {
            all.extend_from_slice(&c.unwrap());
        }
        assert_eq!(all.len(), 300);
        assert_eq!(&all[120..150], &[b'e'; 30][..], "in order");
        assert_eq!(upload.sent(), 300);
        assert!(upload.failure(&l).is_none());
    }

    #[tokio::test]
    async fn limits_refuse_what_is_too_large() {
        // Declared too large: refused before reading.
        let l = limits(100, 1000);
        let e = read(&l, &parts(Some(5000)), chunked(1, 10))
            .await
            .unwrap_err();
        assert_eq!(e, GatewayError::BodyTooLarge(1000));
        // Streaming off: a body past the held size is refused.
        let off = limits(100, 0);
        let e = read(&off, &parts(None), chunked(10, 30)).await.unwrap_err();
        assert_eq!(e, GatewayError::BodyTooLarge(100));
        // Past the streamed size while streaming: the upload stops and says why.
        let Incoming::Streaming { head, rest, .. } =
            read(&l, &parts(None), chunked(50, 30)).await.unwrap()
        else {
            panic!("not streamed");
        };
        let upload = Upload::default();
        let mut s = Stream {
            head: Some(head),
            rest,
            max: 1000,
            stall: Duration::from_secs(5),
            upload: upload.clone(),
            done: false,
        };
        let mut failed = false;
        while let Some(c) = s.next().await {
            failed |= c.is_err();
        }
        assert!(failed);
        assert!(upload.sent() <= 1000);
        assert_eq!(upload.failure(&l), Some(GatewayError::BodyTooLarge(1000)));
    }
}
