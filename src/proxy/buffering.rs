//! Request buffering (`proxy-request-buffering: on`, ingress-nginx's default): the whole
//! request body is read from the client before any backend is contacted, so a slow
//! client never holds an upstream connection (what protects threaded backends), and the
//! body can be replayed when `proxy-next-upstream` retries.
//!
//! Owns reading a body to its end and keeping it: in memory up to
//! `client-body-buffer-size` (default 8k, ingress-nginx's ConfigMap default; nginx's own
//! is 8k/16k), beyond that in a temporary file in `$TMPDIR` (else `/tmp`), created
//! already unlinked so it disappears with the request (or the process) whatever happens.
//! The body is bounded by `proxy-body-size` on the way in (413). Each read waits at most
//! `client-body-timeout` (408).
//!
//! Bounds, per request: memory `client-body-buffer-size`, disk `proxy-body-size`, while
//! the client uploads. When the body goes upstream, Pingora takes it as one buffer, so a
//! body kept on disk is read back into memory for the time of the upstream write (and of
//! each retry); with `proxy-body-size: 0` (unlimited) that is the body's size. There is
//! no total cap across requests beyond the connection cap (`max-worker-connections`).
//!
//! Pingora 0.9.1 hands a request body that was read before the upstream connection to
//! the upstream only through its retry buffer (at most 64 KiB, filled while reading). So
//! the buffer is switched on when the last 64 KiB of a body of known length are due,
//! and [`BufferedBody::replay`] replaces that tail with the whole body in
//! `request_body_filter`. A body of unknown length (chunked, or HTTP/2 without
//! `content-length`) cannot be carried that way: it is streamed as with `off`
//! (`proxy-body-size` still applies), and not retried once more than 64 KiB was sent.
//! gRPC routes always stream (nginx's `grpc_pass` does not buffer either).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::routing::{GlobalSettings, Route, UpstreamProtocol};

/// Pingora's retry buffer (`BODY_BUF_LIMIT` in pingora-core 0.9.1, HTTP/1 and HTTP/2).
pub const PINGORA_REPLAY_LIMIT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body grew past `proxy-body-size` (413).
    #[error("request body over proxy-body-size ({limit} bytes)")]
    TooLarge { limit: u64 },
    /// No body bytes arrived within `client-body-timeout` (408).
    #[error("no request body data within client-body-timeout ({0:?})")]
    TimedOut(Duration),
    /// The client failed or went away mid-body.
    #[error("reading the request body: {0}")]
    Client(#[from] Box<pingora::Error>),
    /// The temporary file could not be written or read (500, as nginx).
    #[error("request body temporary file: {0}")]
    File(#[from] std::io::Error),
    /// Fewer bytes than `content-length` said.
    #[error("request body ended after {got} of {declared} bytes")]
    Short { got: u64, declared: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How one request's body is to be buffered.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The body's `content-length`.
    pub declared: u64,
    /// Bytes kept in memory before spilling to a file (`client-body-buffer-size`).
    pub memory: u64,
    /// `proxy-body-size` (`None`: unlimited).
    pub limit: Option<u64>,
    /// `client-body-timeout`, per read.
    pub timeout: Duration,
}

/// A complete request body, in memory or in an unlinked temporary file.
#[derive(Debug)]
pub struct BufferedBody {
    memory: BytesMut,
    file: Option<File>,
    len: u64,
    memory_limit: u64,
}

/// Where spilled bodies go: `$TMPDIR`, else `/tmp` (nginx: `client_body_temp_path`).
pub fn temp_dir() -> PathBuf {
    std::env::temp_dir()
}

impl BufferedBody {
    pub fn new(memory_limit: u64) -> BufferedBody {
        BufferedBody {
            memory: BytesMut::new(),
            file: None,
            len: 0,
            memory_limit,
        }
    }

    /// Body bytes kept.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body went to a temporary file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Bytes held in memory now (at most the memory limit).
    pub fn memory_bytes(&self) -> usize {
        self.memory.len()
    }

    /// Appends a chunk, spilling everything to a temporary file once the memory limit
    /// would be passed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let new_len = self.len + chunk.len() as u64;
        match &mut self.file {
            Some(f) => f.write_all(chunk)?,
            None if new_len <= self.memory_limit => self.memory.extend_from_slice(chunk),
            None => {
                // tempfile() opens with O_TMPFILE or unlinks at once: no name to clean up.
                let mut f = tempfile::tempfile_in(temp_dir())?;
                f.write_all(&self.memory)?;
                f.write_all(chunk)?;
                self.memory = BytesMut::new();
                self.file = Some(f);
            }
        }
        self.len = new_len;
        Ok(())
    }

    /// The whole body, for one attempt upstream. A file is read off the event loop.
    pub async fn replay(&self) -> Result<Bytes> {
        let Some(file) = &self.file else {
            return Ok(Bytes::copy_from_slice(&self.memory));
        };
        let file = file.try_clone()?;
        let len = usize::try_from(self.len).map_err(std::io::Error::other)?;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, 0)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// How to buffer this request's body, or `None` to stream it: buffering is on for the
/// route (its annotation, else the ConfigMap), the backend is not gRPC, the request is
/// not an upgrade, and its body has a length (no `transfer-encoding`).
pub fn plan(
    req: &pingora::http::RequestHeader,
    route: &Route,
    globals: &GlobalSettings,
) -> Option<Plan> {
    let p = &route.policy;
    let on = p.request_buffering.unwrap_or(globals.request_buffering);
    let grpc = matches!(
        route.protocol,
        UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs
    );
    let h = &req.headers;
    if !on
        || grpc
        || h.contains_key(http::header::TRANSFER_ENCODING)
        || h.contains_key(http::header::UPGRADE)
    {
        return None;
    }
    let declared = h
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)?;
    Some(Plan {
        declared,
        memory: p
            .client_body_buffer_size
            .unwrap_or(globals.client_body_buffer_size),
        limit: p.body_limit,
        timeout: globals.client_body_timeout,
    })
}

/// Whether `expect: 100-continue` asks for an interim response before the body.
pub fn expects_continue(req: &pingora::http::RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// Reads the whole body of the request (its `content-length` is `plan.declared`).
/// Pingora's retry buffer is switched on for the last [`PINGORA_REPLAY_LIMIT`] bytes so
/// that it hands the body to the upstream (see the module doc).
pub async fn read(session: &mut Session, plan: &Plan) -> Result<BufferedBody> {
    if let Some(limit) = plan.limit.filter(|l| plan.declared > *l) {
        return Err(Error::TooLarge { limit });
    }
    if expects_continue(session.req_header()) {
        session.write_continue_response().await?;
    }
    let mut body = BufferedBody::new(plan.memory);
    loop {
        if plan.declared - body.len() <= PINGORA_REPLAY_LIMIT {
            session.enable_retry_buffering();
        }
        // HTTP/1 sessions time their reads too (the same timeout); HTTP/2 ones do not.
        let chunk = match tokio::time::timeout(plan.timeout, session.read_request_body()).await {
            Err(_) => return Err(Error::TimedOut(plan.timeout)),
            Ok(Err(e)) if e.etype() == &pingora::ErrorType::ReadTimedout => {
                return Err(Error::TimedOut(plan.timeout))
            }
            Ok(r) => r?,
        };
        let Some(chunk) = chunk else { break };
        if let Some(limit) = plan.limit.filter(|l| body.len() + chunk.len() as u64 > *l) {
            return Err(Error::TooLarge { limit });
        }
        body.push(&chunk)?;
    }
    if body.len() != plan.declared {
        return Err(Error::Short {
            got: body.len(),
            declared: plan.declared,
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_stay_in_memory() {
        let mut b = BufferedBody::new(8);
        b.push(b"abc").unwrap();
        b.push(b"defgh").unwrap();
        assert!(!b.on_disk());
        assert_eq!(b.memory_bytes(), 8);
        assert_eq!(&b.replay().await.unwrap()[..], b"abcdefgh");
    }

    #[tokio::test]
    async fn large_bodies_spill_to_an_unlinked_file_and_replay_intact() {
        let mut b = BufferedBody::new(1024);
        let mut want = Vec::new();
        for i in 0..300u32 {
            let chunk: Vec<u8> = (0..1000).map(|j| ((i * 7 + j) % 251) as u8).collect();
            b.push(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        assert!(b.on_disk());
        assert_eq!(b.memory_bytes(), 0, "memory is released once on disk");
        assert_eq!(b.len(), 300_000);
        // Twice: a retry replays the same bytes.
        assert_eq!(&b.replay().await.unwrap()[..], &want[..]);
        assert_eq!(&b.replay().await.unwrap()[..], &want[..]);
    }
}
