//! The strict request-framing guard: every client connection's byte stream (after TLS
//! and the PROXY header, before Pingora's HTTP/1 parser) is read by [`FramingGuard`],
//! which frames requests exactly as a strict HTTP/1.1 server does and hands Pingora
//! only complete heads it has checked, then exactly the body those heads announce.
//!
//! Why a stream wrapper: Pingora's HTTP/1 parser (which sluice must not fork) accepts
//! a 1 MiB head, restarts its header timeout on every read, forwards list-valued or
//! repeated `Content-Length`, takes a chunk size line to run to the next CRLF, and keeps
//! the connection after ambiguous framing. The guard refuses all of that before Pingora
//! sees a byte of it: it writes nginx's error page itself (`Connection: close`) and
//! closes the connection, so no smuggled request reaches a backend.
//!
//! | limit | default | ingress-nginx ConfigMap key | answer |
//! |---|---|---|---|
//! | whole request head (from the connection's start, or from its first byte on a kept-alive connection) | 60 s | `client-header-timeout` | 408, closed |
//! | request line | 8 KiB | `large-client-header-buffers` (size) | 414, closed |
//! | one header line | 8 KiB | `large-client-header-buffers` (size) | 400, closed |
//! | whole head | 4 × 8 KiB | `large-client-header-buffers` (number × size) | 400, closed |
//! | first read buffer | 1 KiB | `client-header-buffer-size` | (grows into the large buffers) |
//! | idle keep-alive | 75 s | `keep-alive` (0: no keep-alive) | closed |
//! | requests per connection | 1000 | `keep-alive-requests` | `Connection: close` on the last |
//!
//! Refused heads (see [`parse::check_head`]): `Content-Length` with
//! `Transfer-Encoding`, a repeated or list-valued `Content-Length`, a repeated
//! `Transfer-Encoding`, `Transfer-Encoding` on HTTP/1.0 (400), a Transfer-Encoding
//! other than exactly `chunked` (501), a repeated `Host`, malformed lines; chunked
//! bodies whose lines do not end at CRLF (400 if no response has started, else the
//! connection is cut).
//!
//! Pipelining: requests are framed one after another, and a refusal of a pipelined
//! request waits until the responses before it are complete (the guard follows each
//! response's framing on the write side), so they are answered in order. The guard
//! steps aside (passes bytes through untouched) for h2c prior knowledge, for HTTP/2
//! over TLS (ALPN), and after a `101 Switching Protocols` answer to an `Upgrade`.
//!
//! Cost: the head is copied once into a per-connection buffer (1 KiB to start) and
//! scanned once; bodies are read straight into Pingora's buffer, and chunked bodies
//! are scanned only at their size lines.

pub mod parse;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use self::parse::{Body, Chunked, HeadScan, ResponseBody, Scan, Violation};
use crate::routing::GlobalSettings;

/// How long a refused connection's remaining input is read and dropped (nginx's
/// `lingering_timeout`).
pub const LINGER: Duration = Duration::from_secs(2);

/// The per-connection limits, read from the table when the connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `client-header-timeout`.
    pub header_timeout: Duration,
    /// `client-header-buffer-size`: the first buffer a head is read into.
    pub buffer_size: usize,
    /// `large-client-header-buffers`: the request line and each header line fit in one
    /// buffer of this size, the whole head in `large_buffers` of them.
    pub large_buffers: usize,
    pub large_buffer_size: usize,
}

impl Limits {
    pub fn from_globals(g: &GlobalSettings) -> Limits {
        Limits {
            header_timeout: g.client_header_timeout,
            buffer_size: g.client_header_buffer_size,
            large_buffers: g.large_client_header_buffers.0,
            large_buffer_size: g.large_client_header_buffers.1,
        }
    }

    fn head_max(&self) -> usize {
        self.large_buffers * self.large_buffer_size
    }
}

/// Wraps `stream` in the guard (HTTP/2 over TLS passes straight through).
pub fn guard(stream: Stream, limits: Limits) -> Stream {
    Box::new(FramingGuard::new(stream, limits))
}

/// Where the request side of the connection is.
#[derive(Debug)]
enum Req {
    /// Reading (and withholding) the next request head.
    Head,
    /// Passing `left` body bytes.
    Length(u64),
    Chunked(Chunked),
    /// An `Upgrade` request is done: wait for its answer before reading on.
    AwaitUpgrade,
}

/// Where the response side is (what Pingora writes).
#[derive(Debug)]
enum Resp {
    Head,
    Length(u64),
    Chunked(Chunked),
    /// A body without framing: the connection ends with it; stop following.
    Untracked,
}

/// What the response side needs to know of a request handed to Pingora.
#[derive(Debug, Clone, Copy)]
struct Pending {
    is_head: bool,
    upgrade: bool,
}

/// The guarded stream. See the module doc.
#[derive(Debug)]
pub struct FramingGuard {
    inner: Stream,
    limits: Limits,
    /// Both directions pass untouched (h2, a tunnel after 101).
    passthrough: bool,
    req: Req,
    /// Bytes read from the client: `buf[start..end]` not yet given to Pingora, of
    /// which `buf[start..release]` are checked and may be.
    buf: Vec<u8>,
    start: usize,
    release: usize,
    end: usize,
    scan: HeadScan,
    inner_eof: bool,
    /// No request head seen yet (h2c prior knowledge is only possible now).
    first: bool,
    deadline: Pin<Box<Sleep>>,
    deadline_armed: bool,
    /// A refusal waiting for the responses before it to complete.
    refusal: Option<Violation>,
    /// The error page being written, then the connection is done.
    rejecting: Option<(Bytes, usize)>,
    closed: bool,
    /// Requests handed to Pingora whose responses are not complete.
    unanswered: VecDeque<Pending>,
    resp: Resp,
    /// A response head split across writes (rare).
    resp_head: Vec<u8>,
    /// The reader, while it waits on the response side rather than on the socket.
    reader: Option<Waker>,
}

impl FramingGuard {
    pub fn new(inner: Stream, limits: Limits) -> FramingGuard {
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        FramingGuard {
            inner,
            limits,
            passthrough: h2,
            req: Req::Head,
            buf: Vec::new(),
            start: 0,
            release: 0,
            end: 0,
            scan: HeadScan::default(),
            inner_eof: false,
            first: true,
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            deadline_armed: !h2,
            refusal: None,
            rejecting: None,
            closed: false,
            unanswered: VecDeque::new(),
            resp: Resp::Head,
            resp_head: Vec::new(),
            reader: None,
        }
    }

    fn park(&mut self, cx: &Context<'_>) {
        match &self.reader {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.reader = Some(cx.waker().clone()),
        }
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Refuses now if nothing is being answered, else once the answers are complete.
    fn refuse(&mut self, why: Violation) {
        self.refusal = Some(why);
    }

    fn start_rejecting(&mut self, why: Violation) {
        let body = super::errors::html_page(why.title());
        let mut page = format!(
            "HTTP/1.1 {}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            why.title(),
            body.len()
        )
        .into_bytes();
        page.extend_from_slice(&body);
        tracing::debug!(status = why.status(), "refusing a request: {}", why.title());
        self.rejecting = Some((Bytes::from(page), 0));
    }

    /// Writes the error page, shuts the connection down and ends the read side.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((page, written)) = &mut self.rejecting {
            while *written < page.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &page[*written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if *written == page.len() && Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            self.rejecting = None;
            self.closed = true;
            self.deadline.as_mut().reset(Instant::now() + LINGER);
        }
        // Errors here only mean the client is already gone.
        if Pin::new(&mut self.inner).poll_shutdown(cx).is_pending() {
            return Poll::Pending;
        }
        // nginx's lingering close: read and drop what the client still sends for a
        // moment, so that closing with unread bytes (a TCP reset) does not destroy the
        // error page before the client reads it.
        while !self.inner_eof && self.deadline.as_mut().poll(cx).is_pending() {
            self.reserve(4096);
            let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {}
                Poll::Ready(_) => self.inner_eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request refused by the framing guard",
        )))
    }

    /// Copies validated or buffered bytes to Pingora.
    fn give(&mut self, out: &mut ReadBuf<'_>, limit: usize) -> usize {
        let n = limit.min(out.remaining());
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.release = 0;
            self.end = 0;
        }
        n
    }

    /// Keeps bytes Pingora read past the end of the current request for the next one.
    fn stash(&mut self, extra: &[u8]) {
        // Only the request side ever stashes, and only when the buffer is empty.
        debug_assert_eq!(self.start, self.end);
        self.start = 0;
        self.release = 0;
        self.end = 0;
        self.reserve(extra.len());
        self.buf[..extra.len()].copy_from_slice(extra);
        self.end = extra.len();
    }

    fn reserve(&mut self, more: usize) {
        if self.start > 0 && self.start == self.release {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.release = 0;
            self.start = 0;
        }
        let want = self.end + more;
        if self.buf.len() < want {
            let grown = want.max(self.buf.len() * 2).max(self.limits.buffer_size);
            self.buf.resize(grown, 0);
        }
    }

    fn request_done(&mut self, upgrade: bool) {
        self.req = if upgrade {
            Req::AwaitUpgrade
        } else {
            Req::Head
        };
    }

    /// The request side's next step while reading a head. `Ready` ends `poll_read`.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if self.start < self.end {
                let head = &self.buf[self.start..self.end];
                if self.first && head.starts_with(parse::H2_PREFACE_LINE) {
                    // h2c prior knowledge: Pingora speaks HTTP/2 on this connection.
                    self.passthrough = true;
                    self.release = self.end;
                    return Poll::Ready(Ok(true));
                }
                let limits = self.limits;
                match self
                    .scan
                    .scan(head, limits.large_buffer_size, limits.head_max())
                {
                    Scan::Refuse(why) => {
                        self.refuse(why);
                        return Poll::Ready(Ok(true));
                    }
                    Scan::Complete(len) => {
                        match parse::check_head(&head[..len]) {
                            Err(why) => self.refuse(why),
                            Ok(h) => {
                                self.first = false;
                                self.deadline_armed = false;
                                self.scan = HeadScan::default();
                                self.release = self.start + len;
                                self.unanswered.push_back(Pending {
                                    is_head: h.is_head,
                                    upgrade: h.upgrade,
                                });
                                self.req = match h.body {
                                    Body::None | Body::Length(0) if h.upgrade => Req::AwaitUpgrade,
                                    Body::None | Body::Length(0) => Req::Head,
                                    Body::Length(n) => Req::Length(n),
                                    Body::Chunked => Req::Chunked(Chunked::default()),
                                };
                            }
                        }
                        return Poll::Ready(Ok(true));
                    }
                    Scan::Partial => {}
                }
            }
            // The head is incomplete: its time runs from the connection's start (the
            // first request) or from its first byte once the answers before it are out.
            if !self.deadline_armed && self.unanswered.is_empty() && self.start < self.end {
                self.deadline
                    .as_mut()
                    .reset(Instant::now() + self.limits.header_timeout);
                self.deadline_armed = true;
            }
            if self.deadline_armed && self.deadline.as_mut().poll(cx).is_ready() {
                self.deadline_armed = false;
                self.refuse(Violation::Timeout);
                return Poll::Ready(Ok(true));
            }
            if self.inner_eof {
                return Poll::Ready(Ok(false));
            }
            self.reserve(self.limits.buffer_size.max(1024));
            let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.inner_eof = true;
                    }
                    self.end += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Also wake when the answers before this head are out, so its
                    // deadline starts then.
                    if !self.unanswered.is_empty() {
                        self.park(cx);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Follows what Pingora wrote, to know when each response is complete.
    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.passthrough {
            match &mut self.resp {
                Resp::Untracked => return,
                Resp::Length(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        self.response_done();
                    }
                }
                Resp::Chunked(c) => match c.feed(data) {
                    Ok(n) => {
                        data = &data[n..];
                        if c.done() {
                            self.response_done();
                        }
                    }
                    Err(_) => self.resp = Resp::Untracked,
                },
                Resp::Head => {
                    // `len`: bytes of `data` up to the end of the head; `head`: the
                    // whole head when it was split across writes.
                    let (len, head) = if self.resp_head.is_empty() {
                        match parse::head_end(data) {
                            Some(len) => (len, None),
                            None => {
                                self.resp_head.extend_from_slice(data);
                                return;
                            }
                        }
                    } else {
                        let had = self.resp_head.len();
                        self.resp_head.extend_from_slice(data);
                        match parse::head_end(&self.resp_head) {
                            Some(full) => {
                                let mut h = std::mem::take(&mut self.resp_head);
                                h.truncate(full);
                                (full - had, Some(h))
                            }
                            None if self.resp_head.len() > 1 << 20 => {
                                self.resp = Resp::Untracked;
                                return;
                            }
                            None => return,
                        }
                    };
                    let front = self.unanswered.front().copied();
                    let is_head = front.is_some_and(|p| p.is_head);
                    let framing =
                        parse::response_body(head.as_deref().unwrap_or(&data[..len]), is_head);
                    data = &data[len..];
                    match framing {
                        ResponseBody::Interim => {}
                        ResponseBody::Switching if front.is_some_and(|p| p.upgrade) => {
                            self.passthrough = true;
                            self.wake_reader();
                            return;
                        }
                        ResponseBody::Switching | ResponseBody::UntilClose => {
                            self.resp = Resp::Untracked;
                            self.upgrade_answered();
                            return;
                        }
                        ResponseBody::Length(0) => {
                            self.upgrade_answered();
                            self.response_done();
                        }
                        ResponseBody::Length(n) => {
                            self.upgrade_answered();
                            self.resp = Resp::Length(n);
                        }
                        ResponseBody::Chunked => {
                            self.upgrade_answered();
                            self.resp = Resp::Chunked(Chunked::default());
                        }
                    }
                }
            }
        }
    }

    /// A final answer other than 101 to an `Upgrade` request: read on as HTTP/1.
    fn upgrade_answered(&mut self) {
        if matches!(self.req, Req::AwaitUpgrade) && self.unanswered.len() == 1 {
            self.req = Req::Head;
            self.wake_reader();
        }
    }

    fn response_done(&mut self) {
        self.resp = Resp::Head;
        self.unanswered.pop_front();
        if self.unanswered.is_empty() {
            self.wake_reader();
        }
    }
}

impl AsyncRead for FramingGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.rejecting.is_some() || this.closed {
                return this.poll_reject(cx);
            }
            if this.release > this.start {
                this.give(out, this.release - this.start);
                return Poll::Ready(Ok(()));
            }
            if this.passthrough {
                if this.start < this.end {
                    this.give(out, this.end - this.start);
                    return Poll::Ready(Ok(()));
                }
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if let Some(why) = this.refusal {
                if this.unanswered.is_empty() {
                    this.refusal = None;
                    this.start_rejecting(why);
                    continue;
                }
                this.park(cx);
                return Poll::Pending;
            }
            match &mut this.req {
                Req::AwaitUpgrade => {
                    this.park(cx);
                    return Poll::Pending;
                }
                Req::Head => match this.poll_head(cx) {
                    Poll::Ready(Ok(true)) => continue,
                    // The client closed between requests (or mid-head: Pingora sees a
                    // closed connection either way).
                    Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                Req::Length(left) => {
                    let left_now = *left;
                    let upgrade = this.unanswered.back().is_some_and(|p| p.upgrade);
                    let n = if this.start < this.end {
                        let avail = ((this.end - this.start) as u64).min(left_now) as usize;
                        this.give(out, avail) as u64
                    } else {
                        if this.inner_eof {
                            return Poll::Ready(Ok(()));
                        }
                        let before = out.filled().len();
                        match Pin::new(&mut this.inner).poll_read(cx, out) {
                            Poll::Ready(Ok(())) => {}
                            other => return other,
                        }
                        let got = (out.filled().len() - before) as u64;
                        if got == 0 {
                            this.inner_eof = true;
                            return Poll::Ready(Ok(()));
                        }
                        if got > left_now {
                            let keep = before + left_now as usize;
                            let extra = out.filled()[keep..].to_vec();
                            out.set_filled(keep);
                            this.stash(&extra);
                        }
                        got.min(left_now)
                    };
                    if let Req::Length(left) = &mut this.req {
                        *left -= n;
                        if *left == 0 {
                            this.request_done(upgrade);
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Req::Chunked(_) => {
                    let upgrade = this.unanswered.back().is_some_and(|p| p.upgrade);
                    let Req::Chunked(state) = &this.req else {
                        unreachable!()
                    };
                    // The parser is small and Copy: work on a copy, store it back.
                    let mut c = *state;
                    let fed = if this.start < this.end {
                        // Buffered bytes: give Pingora the body part of them only.
                        let k = (this.end - this.start).min(out.remaining());
                        c.feed(&this.buf[this.start..this.start + k]).map(|n| {
                            this.give(out, n);
                        })
                    } else {
                        if this.inner_eof {
                            return Poll::Ready(Ok(()));
                        }
                        let before = out.filled().len();
                        match Pin::new(&mut this.inner).poll_read(cx, out) {
                            Poll::Ready(Ok(())) => {}
                            other => return other,
                        }
                        if out.filled().len() == before {
                            this.inner_eof = true;
                            return Poll::Ready(Ok(()));
                        }
                        match c.feed(&out.filled()[before..]) {
                            Ok(n) => {
                                let keep = before + n;
                                if keep < out.filled().len() {
                                    let extra = out.filled()[keep..].to_vec();
                                    out.set_filled(keep);
                                    this.stash(&extra);
                                }
                                Ok(())
                            }
                            Err(why) => {
                                out.set_filled(before);
                                Err(why)
                            }
                        }
                    };
                    this.req = Req::Chunked(c);
                    match fed {
                        Ok(()) => {
                            if c.done() {
                                this.request_done(upgrade);
                            }
                            return Poll::Ready(Ok(()));
                        }
                        Err(why) => {
                            // A response already under way cannot be replaced: cut.
                            let untouched = this.unanswered.len() == 1
                                && matches!(this.resp, Resp::Head)
                                && this.resp_head.is_empty();
                            if untouched {
                                this.unanswered.clear();
                                this.start_rejecting(why);
                            } else {
                                this.closed = true;
                                this.deadline.as_mut().reset(Instant::now() + LINGER);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for FramingGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rejecting.is_some() || this.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            if !this.passthrough {
                this.observe(&data[..n]);
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rejecting.is_some() || this.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                if n == 0 || this.passthrough {
                    break;
                }
                let k = n.min(b.len());
                this.observe(&b[..k]);
                n -= k;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// Everything Pingora asks of a connection besides bytes comes from the real one, so
// TLS and ALPN, the PROXY digest and socket details work through the guard.
#[async_trait]
impl Shutdown for FramingGuard {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for FramingGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for FramingGuard {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for FramingGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for FramingGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for FramingGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for FramingGuard {
    /// Pingora peeks for the h2c preface before reading anything.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.first && self.end == 0 {
            self.inner.try_peek(buf).await
        } else {
            Ok(false)
        }
    }
}
