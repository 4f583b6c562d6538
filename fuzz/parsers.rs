//! Fuzz targets for the small parsers: the nginx-variable template parser, htpasswd
//! hashes, the PROXY protocol header reader, the ClientHello SNI peek and `sluice
//! check`'s input reader. Each
//! must never panic on any input, and where a simple property says what the answer
//! must be, the answer is checked.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sluice::check;
use sluice::config::TranslateConfig;
use sluice::proxy::proxy_protocol::read_header;
use sluice::proxy::tls::sni::{self, Hello, MAX_HELLO};
use sluice::routing::auth::{md5_crypt, PasswordHash};
use sluice::routing::certs::crypto_provider;
use sluice::routing::template::{Dialect, HeaderTemplate, Part, Template};

use crate::engine::Choices;

/// `Template::parse` (log-format-upstream, upstream-hash-by, proxy-set-headers values),
/// `HeaderTemplate::parse` and the auth-url template parser.
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t = Template::parse(&text);
    assert_eq!(&*t.source, &*text);
    let _ = t.unknown();
    if !text.contains('$') {
        assert_eq!(t.as_literal(), Some(&*text), "text without $ is a literal");
    }
    // Literal parts are exactly the source minus the variable references.
    let literal: usize = t
        .parts
        .iter()
        .map(|p| match p {
            Part::Literal(l) => l.len(),
            Part::Var(_) => 0,
        })
        .sum();
    assert!(literal <= text.len());
    let (name, value) = text.split_once(':').unwrap_or(("x-fuzz", &text));
    if let Ok(h) = HeaderTemplate::parse(name, value) {
        if let Some(v) = &h.literal {
            assert!(
                !v.as_bytes().contains(&b'\n'),
                "a header value with a newline: {v:?}"
            );
        }
    }
    let _ = Template::parse_in(&text, Dialect::Url);
    let _ = Template::parse_in(&text, Dialect::HashKey);
}

/// One htpasswd hash per line (`user:hash`, as the `auth` key of a basic-auth Secret
/// holds them): parse, and verify a password when the format is a fast one (bcrypt and
/// SHA-crypt are slow on purpose and checked off the event loop; their parsing is
/// fuzzed, their cost is not). An apr1 hash made from the input verifies its own
/// password and no other.
pub fn htpasswd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(16) {
        let hash = line.split_once(':').map_or(line, |(_, h)| h);
        if let Ok(h) = PasswordHash::parse(hash) {
            let _ = h.kind();
            let _ = h.identity();
            if !h.is_slow() {
                let _ = h.verify(line.as_bytes());
            }
        }
    }
    let mut c = Choices::new(data);
    // MD5-crypt is 1000 rounds: the round trip on one input in eight keeps the rest fast.
    if c.below(8) != 0 {
        return;
    }
    let password = c.text(16);
    let salt: String = c
        .text(8)
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '.' || *ch == '/')
        .collect();
    let made = md5_crypt(password.as_bytes(), "$apr1$", &salt);
    let h = PasswordHash::parse(&made).unwrap_or_else(|e| panic!("{made:?} does not parse: {e}"));
    assert!(
        h.verify(password.as_bytes()),
        "{made:?} rejects its own password"
    );
    assert!(!h.verify(format!("{password}x").as_bytes()));
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

/// The PROXY protocol v1/v2 reader on raw bytes; and a header built from the input's
/// choices (v1 text or v2 binary, IPv4 or IPv6) must read back as its source address,
/// leaving the bytes after it unread.
pub fn proxy_protocol(data: &[u8]) {
    let mut raw = data;
    let got = runtime().block_on(read_header(&mut raw));
    if let (Ok(Some(addr)), Some(line)) = (&got, data.strip_prefix(b"PROXY ")) {
        let text = String::from_utf8_lossy(line);
        let src = text.split(' ').nth(1).unwrap_or("");
        assert_eq!(src.parse::<IpAddr>().ok(), Some(addr.ip()), "v1 {text:?}");
    }
    let mut c = Choices::new(data);
    let v6 = c.flag();
    let ip: IpAddr = if v6 {
        let mut a = [0u8; 16];
        a.iter_mut().for_each(|b| *b = c.byte());
        IpAddr::from(a)
    } else {
        IpAddr::from([c.byte(), c.byte(), c.byte(), c.byte()])
    };
    let src = SocketAddr::new(ip, c.below(65536) as u16);
    let mut header = if c.flag() {
        let (fam, dst) = if v6 {
            ("TCP6", "::1")
        } else {
            ("TCP4", "127.0.0.1")
        };
        format!("PROXY {fam} {} {dst} {} 443\r\n", src.ip(), src.port()).into_bytes()
    } else {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21".to_vec();
        let mut body = Vec::new();
        match src.ip() {
            IpAddr::V4(a) => {
                h.push(0x11);
                body.extend(a.octets());
                body.extend([127, 0, 0, 1]);
            }
            IpAddr::V6(a) => {
                h.push(0x21);
                body.extend(a.octets());
                body.extend(std::net::Ipv6Addr::LOCALHOST.octets());
            }
        }
        body.extend(src.port().to_be_bytes());
        body.extend(443u16.to_be_bytes());
        // TLVs after the addresses are skipped.
        body.extend(c.text(8).bytes());
        h.extend((body.len() as u16).to_be_bytes());
        h.extend(body);
        h
    };
    header.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let mut rest = &header[..];
    let read = runtime().block_on(read_header(&mut rest));
    assert!(
        matches!(read, Ok(Some(a)) if a == src),
        "{read:?} for {src}: {:?}",
        String::from_utf8_lossy(&header)
    );
    assert_eq!(
        rest, b"GET / HTTP/1.1\r\n",
        "the header reader read past the header"
    );
}

/// The ClientHello SNI peek (`proxy::tls::sni`) that routes a TLS connection before
/// its handshake. On raw bytes: a decided answer is a lower-case DNS name or none, a
/// prefix of the input is undecided or gives the same answer, and bytes after a
/// decision do not change it. On a real ClientHello (rustls, with the input's host
/// name, re-cut into records and delivered in reads of the input's sizes): the peek
/// finds that name, and keeps every byte it read for the handshake.
pub fn sni(data: &[u8]) {
    let got = sni::parse(data);
    if let Hello::Done(Some(name)) = &got {
        assert!(
            !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_')),
            "{name:?} is not a lower-case DNS name"
        );
    }
    let mut c = Choices::new(data);
    let cut = c.below(data.len() + 1);
    let prefix = sni::parse(&data[..cut]);
    assert!(
        prefix == Hello::NeedMore || prefix == got,
        "prefix {cut} says {prefix:?}, the whole input {got:?}"
    );
    if let Hello::Done(_) = got {
        let mut more = data.to_vec();
        more.extend(c.text(32).bytes());
        assert_eq!(
            sni::parse(&more),
            got,
            "bytes after the decision changed it"
        );
    }

    // A real ClientHello, one input in four (rustls makes key shares).
    if c.below(4) != 0 {
        return;
    }
    let labels = 1 + c.below(4);
    let name: Vec<String> = (0..labels)
        .map(|_| {
            let n = 1 + c.below(12);
            (0..n)
                .map(|_| *c.pick(&[&'a', &'Z', &'7', &'-', &'_', &'q', &'E']))
                .collect()
        })
        .collect();
    let name = name.join(".");
    let Ok(server_name) = rustls_pki_types::ServerName::try_from(name.clone()) else {
        return;
    };
    let want = match &server_name {
        rustls_pki_types::ServerName::DnsName(_) => Some(name.to_ascii_lowercase()),
        _ => None,
    };
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let c = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Arc::new(c)
    });
    let mut conn = rustls::ClientConnection::new(config.clone(), server_name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    // Re-cut the handshake bytes into records of the input's size.
    let size = 1 + c.below(2000);
    let mut wire = Vec::new();
    for piece in hello[5..].chunks(size) {
        wire.extend_from_slice(&[22, 3, 1, (piece.len() >> 8) as u8, piece.len() as u8]);
        wire.extend_from_slice(piece);
    }
    if wire.len() > MAX_HELLO {
        return; // one-byte records of a large hello: over the cap, by design
    }
    assert_eq!(
        sni::parse(&wire),
        Hello::Done(want.clone()),
        "{name:?} in {size}-byte records"
    );
    let mut reads = Trickle {
        data: &wire,
        step: 1 + c.below(700),
    };
    let mut buf = Vec::new();
    let read = runtime()
        .block_on(sni::read_hello(&mut reads, &mut buf))
        .unwrap();
    assert_eq!(read, want, "{name:?} read {} bytes at a time", reads.step);
    assert_eq!(
        buf, wire,
        "the peek must keep every byte it read, and read no further"
    );
}

/// A reader that hands out at most `step` bytes per read, as a slow client's packets.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// `sluice check -`: any bytes on stdin give a report (text and JSON), never a panic.
pub fn check_input(data: &[u8]) {
    let input = check::load(&["-".to_string()], &mut &data[..]);
    let report = check::check(input, &TranslateConfig::default());
    let _ = report.to_text();
    let json = report.to_json();
    assert!(
        serde_json::from_str::<serde_json::Value>(&json).is_ok(),
        "invalid JSON report"
    );
    assert!(report.summary.exit_code <= 2);
}
