//! `use-proxy-protocol`: the PROXY protocol (v1 text and v2 binary, as HAProxy defines
//! it) in front of HTTP and TLS connections, as a load balancer that is not an HTTP
//! proxy sends it to pass the client address on.
//!
//! Pingora 0.9.1 has no PROXY protocol parser, so [`ProxyProtocolApp`] wraps the HTTP
//! application and reads the header from plain connections before handing them on, and
//! `tls::terminate` calls [`accept_header`] on TLS connections before the handshake
//! (sluice runs that handshake itself). Both read exactly the
//! header (the stream is buffered, so no request bytes are lost) and attach the source
//! address to the connection (as user data of its `ProxyDigest`, where
//! [`proxied_source`] finds it per request).
//!
//! The key is read from the current table per connection, so turning it on or off in
//! the ConfigMap applies to new connections at once. While it is on, a connection
//! without a valid header within [`HEADER_TIMEOUT`] is closed (nginx's `broken header`),
//! and `LOCAL` (v2) / `UNKNOWN` (v1) headers keep the TCP peer. The address is believed
//! only from peers in `proxy-real-ip-cidr` (see `headers::resolve_client`), as nginx's
//! `real_ip_header proxy_protocol` with `set_real_ip_from` does.
//!
//! Hand-written rather than with the `ppp` crate: `ppp` parses a header already in a
//! buffer, while the work here is reading one from a socket without reading past it
//! (8 bytes to tell the versions apart, then v1 byte by byte up to its 107-byte limit,
//! or v2's 16-byte head and its declared length), so `ppp` would replace only the
//! address decoding, some 40 lines that `fuzz/` checks against a header built from the
//! input. TLVs are skipped (sluice uses none).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, Stream};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::debug;

use crate::routing::SharedTable;

/// How long a client may take to send its PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The source address a connection's PROXY header carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedPeer {
    pub source: SocketAddr,
}

/// Why a connection's PROXY header was refused (the connection is then closed; the
/// text goes to a debug log).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client went away or the socket failed mid-header.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("no PROXY header within {} s", HEADER_TIMEOUT.as_secs())]
    Timeout,
    /// Neither signature: the peer is not speaking the PROXY protocol.
    #[error("the connection did not start with a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header longer than 107 bytes")]
    V1TooLong,
    #[error("PROXY v1 header is not text")]
    V1NotText,
    #[error("PROXY v1 source {0:?} is not an address")]
    V1Address(Box<str>),
    /// A `TCP4` line with an IPv6 source, or the reverse.
    #[error("PROXY v1 source {ip} is not {proto}")]
    V1Family { ip: IpAddr, proto: &'static str },
    #[error("PROXY v1 source port {0:?} is not a port")]
    V1Port(Box<str>),
    #[error("malformed PROXY v1 header {0:?}")]
    V1Malformed(Box<str>),
    #[error("bad PROXY v2 signature")]
    V2Signature,
    #[error("PROXY v2 header with version {0}")]
    V2Version(u8),
    #[error("PROXY v2 header with command {0}")]
    V2Command(u8),
    #[error("PROXY v2 address block too short")]
    V2AddressTooShort,
    /// Building the connection's digest failed (Pingora's own error).
    #[error("{0}")]
    Digest(Box<pingora::Error>),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads one PROXY header (v1 or v2) and nothing after it. `Ok(None)`: a valid header
/// without an address (v1 `UNKNOWN`, v2 `LOCAL` or a non-IP family).
pub async fn read_header<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> Result<Option<SocketAddr>> {
    // Both versions are at least 15 bytes long: the first 8 tell them apart.
    let mut start = [0u8; 8];
    s.read_exact(&mut start).await?;
    if start.starts_with(b"PROXY ") {
        let mut line = start.to_vec();
        // v1: at most 107 bytes including CRLF.
        while !line.ends_with(b"\r\n") {
            if line.len() >= 107 {
                return Err(Error::V1TooLong);
            }
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            line.push(b[0]);
        }
        return parse_v1(&line[..line.len() - 2]);
    }
    if start != V2_SIGNATURE[..8] {
        return Err(Error::NotProxy);
    }
    let mut rest = [0u8; 8];
    s.read_exact(&mut rest).await?;
    if rest[..4] != V2_SIGNATURE[8..] {
        return Err(Error::V2Signature);
    }
    let (ver_cmd, family) = (rest[4], rest[5]);
    let len = u16::from_be_bytes([rest[6], rest[7]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2Version(ver_cmd >> 4));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL: the proxy's own connection (health checks)
        1 => {}
        c => return Err(Error::V2Command(c)),
    }
    match family >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 if body.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port)))
        }
        1 | 2 => Err(Error::V2AddressTooShort),
        _ => Ok(None), // UNSPEC or a unix socket: no IP address to use
    }
}

/// `PROXY TCP4 src dst sport dport` / `PROXY TCP6 ...` / `PROXY UNKNOWN ...`.
fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>> {
    let text = std::str::from_utf8(line).map_err(|_| Error::V1NotText)?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.get(1).copied() {
        Some("UNKNOWN") => Ok(None),
        Some(proto @ ("TCP4" | "TCP6")) if fields.len() == 6 => {
            let ip: IpAddr = fields[2]
                .parse()
                .map_err(|_| Error::V1Address(fields[2].into()))?;
            if ip.is_ipv4() != (proto == "TCP4") {
                let proto = if proto == "TCP4" { "TCP4" } else { "TCP6" };
                return Err(Error::V1Family { ip, proto });
            }
            let port: u16 = fields[4]
                .parse()
                .map_err(|_| Error::V1Port(fields[4].into()))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(Error::V1Malformed(text.into())),
    }
}

/// Reads the header from `stream` (within [`HEADER_TIMEOUT`]) and attaches its address.
pub(crate) async fn accept_header<S>(stream: &mut S) -> Result<()>
where
    S: AsyncRead + GetProxyDigest + Unpin + ?Sized,
{
    let source = tokio::time::timeout(HEADER_TIMEOUT, read_header(stream))
        .await
        .map_err(|_| Error::Timeout)??;
    if let Some(source) = source {
        let placeholder = ResponseHeader::build(200, Some(0)).map_err(Error::Digest)?;
        stream.set_proxy_digest(ProxyDigest::new(
            Box::new(placeholder),
            Some(Box::new(ProxiedPeer { source })),
        ));
    }
    Ok(())
}

/// The PROXY source address of the connection a request came on, if any.
pub fn proxied_source(digest: Option<&pingora::protocols::Digest>) -> Option<IpAddr> {
    digest?
        .proxy_digest
        .as_ref()?
        .user_data
        .as_ref()?
        .downcast_ref::<ProxiedPeer>()
        .map(|p| p.source.ip())
}

/// Wraps the HTTP application: plain connections start with their PROXY header while
/// `use-proxy-protocol` is on (TLS connections had theirs read before their handshake).
pub struct ProxyProtocolApp<A> {
    inner: Arc<A>,
    table: Arc<SharedTable>,
}

impl<A> ProxyProtocolApp<A> {
    pub fn new(inner: A, table: Arc<SharedTable>) -> Self {
        ProxyProtocolApp {
            inner: Arc::new(inner),
            table,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ProxyProtocolApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = {
            let table = self.table.load();
            if stream.get_ssl_digest().is_none() && table.globals.use_proxy_protocol {
                if let Err(e) = accept_header(&mut *stream).await {
                    debug!(error = %e, "closing connection: use-proxy-protocol is on");
                    return None;
                }
            }
            super::framing::Limits::from_globals(&table.globals)
        };
        // Request framing (hardening): strict HTTP/1 framing before Pingora's parser.
        let stream = super::framing::guard(stream, limits);
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<Option<SocketAddr>>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let r = read_header(&mut cursor).await;
        let pos = cursor.position() as usize;
        (r, bytes[pos..].to_vec())
    }

    #[tokio::test]
    async fn v1() {
        let (r, rest) =
            parse(b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(r.unwrap(), Some("198.51.100.7:51234".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (r, _) = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n").await;
        assert_eq!(r.unwrap(), Some("[2001:db8::7]:1".parse().unwrap()));
        let (r, rest) = parse(b"PROXY UNKNOWN\r\nx").await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(rest, b"x");
        assert!(parse(b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n")
            .await
            .0
            .is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.0.is_err());
        assert!(parse(&[b'P'; 200]).await.0.is_err());
    }

    #[tokio::test]
    async fn v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x21, 0x11, 0, 12 + 3]);
        h.extend([203, 0, 113, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        h.extend([0xEE, 0, 0]); // a TLV, skipped with the block
        h.extend(b"GET");
        let (r, rest) = parse(&h).await;
        assert_eq!(r.unwrap(), Some("203.0.113.9:8080".parse().unwrap()));
        assert_eq!(rest, b"GET");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).await.0.unwrap(), None);
        let mut v6 = V2_SIGNATURE.to_vec();
        v6.extend([0x21, 0x21, 0, 36]);
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x01;
        src[15] = 9;
        v6.extend(src);
        v6.extend([0u8; 16]);
        v6.extend([0, 80, 0, 81]);
        assert_eq!(
            parse(&v6).await.0.unwrap(),
            Some("[2001::9]:80".parse().unwrap())
        );
    }
}
