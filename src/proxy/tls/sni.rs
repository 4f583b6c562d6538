//! The SNI of a TLS ClientHello, read before any TLS work so the connection can be
//! routed by name first: to the handshake config of the host's client-certificate
//! policy, and (issue 14 §2) to SSL passthrough.
//!
//! [`parse`] is a small bounded parser over the bytes received so far: handshake
//! records (a ClientHello may be fragmented over several), the ClientHello's
//! extensions, the `server_name` extension's first `host_name`. It never panics and
//! never reads past its input; anything unexpected (another record type, another
//! handshake message, inconsistent lengths, a name that is not a DNS name) ends with
//! "no SNI", and the TLS library then sees the same bytes and answers as it would.
//! [`read_hello`] reads until [`parse`] decides, at most [`MAX_HELLO`] bytes, scanning
//! each record once however the bytes trickle in (linear work per connection); the
//! caller bounds the time and gives the bytes back to the stream (`peek_sni`).

use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most read before giving up on the SNI: one full-size TLS record.
pub const MAX_HELLO: usize = 16 * 1024 + 5;

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// Decided: the SNI host name (lower-cased), or none (no SNI, not a ClientHello,
    /// malformed).
    Done(Option<String>),
}

/// A bounds-checked reader: every accessor returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| (b[0] as usize) << 8 | b[1] as usize)
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
    /// A vector with a `len`-byte length prefix.
    fn vec(&mut self, len: fn(&mut Self) -> Option<usize>) -> Option<&'a [u8]> {
        let n = len(self)?;
        self.take(n)
    }
}

/// Parses the start of a TLS connection.
pub fn parse(buf: &[u8]) -> Hello {
    Scanner::default().feed(buf)
}

/// [`parse`] made incremental, so that a ClientHello trickled in one byte at a time
/// costs linear work, not a re-parse of everything per read (which a client could
/// use to spend 16k parses of up to 16 KiB per connection).
#[derive(Debug, Default)]
struct Scanner {
    /// Where the first record not yet taken starts.
    pos: usize,
    /// The handshake bytes of the records taken (a ClientHello may span several).
    hs: Vec<u8>,
}

impl Scanner {
    /// Takes the complete records of `buf` (all bytes so far, a longer copy of what
    /// the last call saw) from where the last call stopped.
    fn feed(&mut self, buf: &[u8]) -> Hello {
        const HANDSHAKE: u8 = 22;
        const CLIENT_HELLO: u8 = 1;
        loop {
            let mut records = Reader(buf.get(self.pos..).unwrap_or_default());
            let Some(header) = records.take(5) else {
                return Hello::NeedMore;
            };
            let len = (header[3] as usize) << 8 | header[4] as usize;
            if header[0] != HANDSHAKE || header[1] != 3 || len == 0 || len > 16 * 1024 {
                return Hello::Done(None);
            }
            let Some(payload) = records.take(len) else {
                return Hello::NeedMore;
            };
            self.pos += 5 + len;
            self.hs.extend_from_slice(payload);
            let mut msg = Reader(&self.hs);
            let (Some(kind), Some(msg_len)) = (msg.u8(), msg.u24()) else {
                continue;
            };
            if kind as u8 != CLIENT_HELLO || msg_len > MAX_HELLO {
                return Hello::Done(None);
            }
            if let Some(body) = msg.take(msg_len) {
                return Hello::Done(client_hello_sni(body));
            }
        }
    }
}

/// The `host_name` of a ClientHello body's `server_name` extension.
fn client_hello_sni(body: &[u8]) -> Option<String> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec(Reader::u8)?; // legacy_session_id
    r.vec(Reader::u16)?; // cipher_suites
    r.vec(Reader::u8)?; // legacy_compression_methods
    let mut exts = Reader(r.vec(Reader::u16)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec(Reader::u16)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let mut names = Reader(list.vec(Reader::u16)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec(Reader::u16)?;
            if name_type == 0 {
                return host_name(name);
            }
        }
        return None;
    }
    None
}

/// A DNS name as rustls would accept it, lower-cased, without a trailing dot.
fn host_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let ok = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && raw
            .split(|b| *b == b'.')
            .all(|l| !l.is_empty() && l.len() <= 63);
    ok.then(|| String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// Reads from `s` into `buf` until the ClientHello's SNI is known: at most
/// [`MAX_HELLO`] bytes, then "no SNI". The caller bounds the time and must give
/// `buf` back to the stream: everything read is still the TLS library's to read.
pub async fn read_hello<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    let mut chunk = [0u8; 2048];
    let mut scanner = Scanner::default();
    loop {
        if let Hello::Done(sni) = scanner.feed(buf) {
            return Ok(sni);
        }
        if buf.len() >= MAX_HELLO {
            return Ok(None);
        }
        let want = (MAX_HELLO - buf.len()).min(chunk.len());
        let n = s.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The SNI of the connection's ClientHello, leaving the stream as it was (the bytes
/// read are rewound, so the handshake reads them again).
pub async fn peek_sni(l4: &mut L4Stream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let sni = read_hello(l4, &mut buf).await;
    l4.rewind(&buf);
    sni
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello from rustls for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name.to_string().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// The same handshake bytes re-cut into records of at most `size` bytes.
    fn fragment(hello: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in hello[5..].chunks(size) {
            out.extend_from_slice(&[22, 3, 1, (piece.len() >> 8) as u8, piece.len() as u8]);
            out.extend_from_slice(piece);
        }
        out
    }

    #[test]
    fn finds_the_sni_of_a_real_client_hello() {
        let hello = client_hello("Secure.Example");
        assert_eq!(parse(&hello), Hello::Done(Some("secure.example".into())));
        // Every prefix is undecided, never wrong.
        for n in 0..hello.len() {
            assert_eq!(parse(&hello[..n]), Hello::NeedMore, "prefix {n}");
        }
    }

    #[test]
    fn fragmented_client_hellos() {
        let hello = client_hello("a.example");
        for size in [1, 7, 100] {
            let f = fragment(&hello, size);
            assert_eq!(parse(&f), Hello::Done(Some("a.example".into())), "{size}");
        }
    }

    #[test]
    fn no_sni_and_not_tls() {
        // rustls sends no SNI for an IP address.
        let hello = client_hello("127.0.0.1");
        assert_eq!(parse(&hello), Hello::Done(None));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Hello::Done(None));
        // An alert record, a zero-length record, an oversized record.
        assert_eq!(parse(&[21, 3, 1, 0, 2, 1, 0]), Hello::Done(None));
        assert_eq!(parse(&[22, 3, 1, 0, 0]), Hello::Done(None));
        assert_eq!(parse(&[22, 3, 1, 0x40, 0x01]), Hello::Done(None));
        // A ServerHello, and a ClientHello claiming more than the cap.
        assert_eq!(parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::Done(None));
        assert_eq!(
            parse(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
            Hello::Done(None)
        );
    }

    #[test]
    fn hostile_client_hellos_never_panic() {
        let hello = client_hello("b.example");
        // Every single-byte corruption and every truncation of the body.
        for i in 5..hello.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut h = hello.clone();
                h[i] = v;
                let _ = parse(&h);
            }
        }
        let mut rng = fastrand::Rng::with_seed(14);
        for _ in 0..2000 {
            let len = rng.usize(0..300);
            let mut h: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if rng.bool() && h.len() > 5 {
                h[0] = 22;
                h[1] = 3;
            }
            let _ = parse(&h);
        }
        // A name that is not a DNS name gives no SNI.
        assert_eq!(host_name(b"a\0b"), None);
        assert_eq!(host_name(b"a..b"), None);
        assert_eq!(host_name(b"ok.example."), Some("ok.example".into()));
    }

    #[tokio::test]
    async fn read_hello_is_bounded() {
        // A ClientHello announced at 16 KiB, then an endless trickle of one-byte
        // records: gives up at the cap.
        let mut endless = vec![22u8, 3, 1, 0, 4, 1, 0, 0x3f, 0xff];
        endless.extend(std::iter::repeat_n([22u8, 3, 1, 0, 1, 0], 4000).flatten());
        let mut buf = Vec::new();
        let sni = read_hello(&mut &endless[..], &mut buf).await.unwrap();
        assert_eq!(sni, None);
        assert!(buf.len() <= MAX_HELLO);
        // A real one, in tiny records, is read whole and kept for the handshake.
        let f = fragment(&client_hello("c.example"), 3);
        let mut buf = Vec::new();
        let sni = read_hello(&mut &f[..], &mut buf).await.unwrap();
        assert_eq!(sni.as_deref(), Some("c.example"));
        assert_eq!(buf, f);
    }
}
