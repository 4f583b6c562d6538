//! The strict HTTP/1.1 grammar the framing guard applies: where a request head ends
//! (scanned incrementally, with nginx's line and size limits), what a complete head
//! says about the body (Content-Length, `Transfer-Encoding: chunked`, or none, after
//! nginx's checks), and chunked framing with lines that end strictly at CRLF (used for
//! request bodies and, to know where a response ends, for response bodies).
//!
//! Pure functions over byte slices: no I/O, no allocation.

/// Why a request is refused, as the status nginx answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// 400: malformed head, ambiguous framing, a header line or head over the limit.
    BadRequest,
    /// 400 "Request Header Or Cookie Too Large" (nginx's wording for the same status).
    HeaderTooLarge,
    /// 414: the request line does not fit in one large header buffer.
    UriTooLong,
    /// 501: a Transfer-Encoding other than `chunked`.
    NotImplemented,
    /// 408: the head did not arrive within `client-header-timeout`.
    Timeout,
}

impl Violation {
    pub fn status(self) -> u16 {
        match self {
            Violation::BadRequest | Violation::HeaderTooLarge => 400,
            Violation::UriTooLong => 414,
            Violation::NotImplemented => 501,
            Violation::Timeout => 408,
        }
    }

    /// The title nginx prints in its error page.
    pub fn title(self) -> &'static str {
        match self {
            Violation::BadRequest => "400 Bad Request",
            Violation::HeaderTooLarge => "400 Request Header Or Cookie Too Large",
            Violation::UriTooLong => "414 Request-URI Too Large",
            Violation::NotImplemented => "501 Not Implemented",
            Violation::Timeout => "408 Request Time-out",
        }
    }
}

/// Incremental scan for the end of a request head. Offsets are relative to the start
/// of the head; the caller shifts them if it moves the buffer.
#[derive(Debug, Default, Clone)]
pub struct HeadScan {
    /// Bytes already looked at.
    pub scanned: usize,
    /// Start of the line being read.
    line_start: usize,
    /// The request line has been seen (so an empty line ends the head).
    have_request_line: bool,
}

/// The outcome of scanning more bytes of a head.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Need more bytes.
    Partial,
    /// The head is the first `n` bytes (blank line included).
    Complete(usize),
    Refuse(Violation),
}

impl HeadScan {
    /// Looks at `head` (all bytes of the head so far; earlier bytes were scanned before).
    /// `line_max`: the longest request or header line; `head_max`: the whole head.
    pub fn scan(&mut self, head: &[u8], line_max: usize, head_max: usize) -> Scan {
        while let Some(i) = head[self.scanned..].iter().position(|&b| b == b'\n') {
            let lf = self.scanned + i;
            self.scanned = lf + 1;
            let mut line = &head[self.line_start..lf];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            self.line_start = lf + 1;
            if line.is_empty() {
                if self.have_request_line {
                    return Scan::Complete(lf + 1);
                }
                // Empty lines before the request line are ignored (RFC 9112 §2.2).
                if lf + 1 > line_max {
                    return Scan::Refuse(Violation::BadRequest);
                }
                continue;
            }
            if !self.have_request_line {
                if line.len() > line_max {
                    return Scan::Refuse(Violation::UriTooLong);
                }
                self.have_request_line = true;
            } else if line.len() > line_max {
                return Scan::Refuse(Violation::HeaderTooLarge);
            }
            if lf + 1 > head_max {
                return Scan::Refuse(Violation::HeaderTooLarge);
            }
        }
        self.scanned = head.len();
        let partial = head.len() - self.line_start;
        if partial > line_max {
            return Scan::Refuse(if self.have_request_line {
                Violation::HeaderTooLarge
            } else {
                Violation::UriTooLong
            });
        }
        if head.len() > head_max {
            return Scan::Refuse(Violation::HeaderTooLarge);
        }
        Scan::Partial
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

/// What a valid request head tells the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub body: Body,
    /// `HEAD`: the response has no body whatever its headers say.
    pub is_head: bool,
    /// Carries `Upgrade`: a `101` answer turns the connection into a tunnel.
    pub upgrade: bool,
}

/// The request line of h2c prior knowledge.
pub const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_sp(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ').map_or(start, |e| e + 1);
    &v[start..end]
}

/// Lines of a head without their line ending, leading empty lines skipped.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty())
}

/// Checks a complete head the way nginx does and says how its body is framed.
///
/// Refused: a request line that is not `METHOD SP target SP HTTP/1.x`; header names
/// that are not tokens (which covers whitespace before the colon and obs-fold); control
/// characters in values; more than one `Host`, `Content-Length` or `Transfer-Encoding`
/// (400); a Content-Length that is not one decimal number (so `5, 5` too: 400); both
/// Content-Length and Transfer-Encoding (400); Transfer-Encoding on HTTP/1.0 (400); a
/// Transfer-Encoding other than exactly `chunked` (501; a tab before it is part of the
/// value, as in nginx).
pub fn check_head(head: &[u8]) -> Result<Head, Violation> {
    use Violation::BadRequest;
    let mut it = lines(head);
    let line = it.next().ok_or(BadRequest)?;
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if parts.next().is_none() => (m, t, v),
        _ => return Err(BadRequest),
    };
    if !method.iter().all(|&b| is_tchar(b)) || target.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return Err(BadRequest);
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(BadRequest),
    };
    let (mut length, mut chunked, mut hosts, mut upgrade) = (None, None, 0, false);
    for line in it.take_while(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':').ok_or(BadRequest)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(BadRequest);
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(BadRequest);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = trim_sp(value);
            if length.is_some() || v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit)
            {
                return Err(BadRequest);
            }
            length = Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked.is_some() {
                return Err(BadRequest);
            }
            chunked = Some(trim_sp(value).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if hosts > 1 {
                return Err(BadRequest);
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    let body = match (length, chunked) {
        (Some(_), Some(_)) => return Err(BadRequest),
        (_, Some(_)) if http10 => return Err(BadRequest),
        (_, Some(false)) => return Err(Violation::NotImplemented),
        (_, Some(true)) => Body::Chunked,
        (Some(n), None) => Body::Length(n),
        (None, None) => Body::None,
    };
    Ok(Head {
        body,
        is_head: method == b"HEAD",
        upgrade,
    })
}

/// Where a response head says its body ends (for the guard's own bookkeeping; the
/// response was built by Pingora, so it is well formed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// An interim response (1xx other than 101): the real one follows.
    Interim,
    /// `101 Switching Protocols`.
    Switching,
    Length(u64),
    Chunked,
    /// Neither: the body runs until the connection closes.
    UntilClose,
}

/// Reads the status and framing of a response head (status line included).
pub fn response_body(head: &[u8], request_was_head: bool) -> ResponseBody {
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    match status {
        101 => return ResponseBody::Switching,
        100..=199 => return ResponseBody::Interim,
        204 | 304 => return ResponseBody::Length(0),
        _ if request_was_head => return ResponseBody::Length(0),
        _ => {}
    }
    let mut framing = ResponseBody::UntilClose;
    for line in lines(head).skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim_sp(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if value.len() >= 7 && value[value.len() - 7..].eq_ignore_ascii_case(b"chunked") {
                return ResponseBody::Chunked;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if let Ok(n) = std::str::from_utf8(value).unwrap_or("x").parse() {
                framing = ResponseBody::Length(n);
            }
        }
    }
    framing
}

/// Where the blank line ending a head (CRLF CRLF) is, as the head's length.
pub fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Chunked framing (RFC 9112 §7.1), fed incrementally. Every line ends at CRLF: a bare
/// LF or CR anywhere in a size line, after chunk data or in a trailer is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunked {
    /// In the hex size of a chunk (`digits` so far).
    #[default]
    Size0,
    Size {
        size: u64,
        digits: u8,
    },
    /// In a chunk extension (after `;` or whitespace following the size).
    Ext {
        size: u64,
    },
    /// Saw CR ending a size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final blank line.
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

impl Chunked {
    /// Consumes bytes of `data` up to the end of the body. Returns how many belong to
    /// the body; fewer than `data.len()` only once [`Chunked::Done`] is reached.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, Violation> {
        use Chunked::*;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            *self = match *self {
                Done => return Ok(i),
                Data { left } => {
                    let take = left.min((data.len() - i) as u64);
                    i += take as usize;
                    *self = if take == left {
                        DataCr
                    } else {
                        Data { left: left - take }
                    };
                    continue;
                }
                Size0 => Size {
                    size: hex(b).ok_or(Violation::BadRequest)?,
                    digits: 1,
                },
                Size { size, digits } => match b {
                    b'\r' => SizeLf { size },
                    b';' | b' ' | b'\t' => Ext { size },
                    _ => {
                        let d = hex(b).ok_or(Violation::BadRequest)?;
                        if digits >= 15 {
                            return Err(Violation::BadRequest);
                        }
                        Size {
                            size: size * 16 + d,
                            digits: digits + 1,
                        }
                    }
                },
                Ext { size } => match b {
                    b'\r' => SizeLf { size },
                    b'\n' | 0 => return Err(Violation::BadRequest),
                    _ => Ext { size },
                },
                SizeLf { size } => match b {
                    b'\n' if size == 0 => TrailerStart,
                    b'\n' => Data { left: size },
                    _ => return Err(Violation::BadRequest),
                },
                DataCr => match b {
                    b'\r' => DataLf,
                    _ => return Err(Violation::BadRequest),
                },
                DataLf => match b {
                    b'\n' => Size0,
                    _ => return Err(Violation::BadRequest),
                },
                TrailerStart => match b {
                    b'\r' => FinalLf,
                    b'\n' => return Err(Violation::BadRequest),
                    _ => Trailer,
                },
                Trailer => match b {
                    b'\r' => TrailerLf,
                    b'\n' => return Err(Violation::BadRequest),
                    _ => Trailer,
                },
                TrailerLf => match b {
                    b'\n' => TrailerStart,
                    _ => return Err(Violation::BadRequest),
                },
                FinalLf => match b {
                    b'\n' => {
                        *self = Done;
                        return Ok(i + 1);
                    }
                    _ => return Err(Violation::BadRequest),
                },
            };
            i += 1;
        }
        Ok(i)
    }

    pub fn done(&self) -> bool {
        *self == Chunked::Done
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(head: &[u8]) -> Scan {
        HeadScan::default().scan(head, 8192, 32768)
    }

    #[test]
    fn head_end_and_limits() {
        let h = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(scan_all(h), Scan::Complete(h.len() - 4));
        // Byte by byte gives the same answer.
        let mut s = HeadScan::default();
        let mut got = Scan::Partial;
        for n in 1..=h.len() {
            got = s.scan(&h[..n], 8192, 32768);
            if got != Scan::Partial {
                break;
            }
        }
        assert_eq!(got, Scan::Complete(h.len() - 4));
        assert_eq!(scan_all(b"\r\nGET / HTTP/1.1\n\n"), Scan::Complete(18));
        let long_line = [b"GET /".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(scan_all(&long_line), Scan::Refuse(Violation::UriTooLong));
        let long_header = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(
            scan_all(&long_header),
            Scan::Refuse(Violation::HeaderTooLarge)
        );
        let many: Vec<u8> = std::iter::once(b"GET / HTTP/1.1\r\n".to_vec())
            .chain((0..100).map(|i| format!("X-{i}: {}\r\n", "v".repeat(400)).into_bytes()))
            .flatten()
            .collect();
        assert_eq!(scan_all(&many), Scan::Refuse(Violation::HeaderTooLarge));
    }

    fn check(s: &str) -> Result<Head, Violation> {
        check_head(s.as_bytes())
    }

    #[test]
    fn framing_headers() {
        let body = |s: &str| check(s).map(|h| h.body);
        assert_eq!(body("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Body::None));
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Body::Length(5))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n"),
            Ok(Body::Chunked)
        );
        let bad = Err(Violation::BadRequest);
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad
        );
        assert_eq!(body("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"), bad);
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            bad
        );
        assert_eq!(body("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), bad);
        assert_eq!(
            body("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n"),
            Err(Violation::NotImplemented)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(Violation::NotImplemented)
        );
        assert_eq!(
            body("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad
        );
        assert_eq!(body("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), bad);
        assert_eq!(body("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"), bad);
        assert_eq!(body("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), bad);
        assert_eq!(body("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), bad);
        assert_eq!(body("GET / HTTP/2.0\r\n\r\n"), bad);
        assert_eq!(body("GET /\r\n\r\n"), bad);
        let up = check("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert!(up.unwrap().upgrade);
        assert!(check("HEAD / HTTP/1.1\r\n\r\n").unwrap().is_head);
    }

    fn chunked(body: &[u8]) -> Result<usize, Violation> {
        let mut c = Chunked::default();
        let n = c.feed(body)?;
        assert!(c.done(), "not done after {body:?}");
        Ok(n)
    }

    #[test]
    fn chunks() {
        let b = b"5;ext=1\r\nhello\r\n0\r\n\r\nGET";
        assert_eq!(chunked(b), Ok(b.len() - 3));
        let t = b"a\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(chunked(t), Ok(t.len()));
        // Byte by byte.
        let mut c = Chunked::default();
        for &x in b"3\r\nabc\r\n0\r\n\r\n" {
            assert_eq!(c.feed(&[x]), Ok(1));
        }
        assert!(c.done());
        for bad in [
            b"5;ext=1\nhello\r\n0\r\n\r\n".as_slice(),
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"x\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert_eq!(
                Chunked::default().feed(bad),
                Err(Violation::BadRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn responses() {
        let r = |h: &str, head| response_body(h.as_bytes(), head);
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false),
            ResponseBody::Length(2)
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true),
            ResponseBody::Length(0)
        );
        assert_eq!(
            r(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                false
            ),
            ResponseBody::Chunked
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\n\r\n", false),
            ResponseBody::UntilClose
        );
        assert_eq!(
            r("HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            ResponseBody::Switching
        );
        assert_eq!(
            r("HTTP/1.1 100 Continue\r\n\r\n", false),
            ResponseBody::Interim
        );
        assert_eq!(
            r("HTTP/1.1 304 Not Modified\r\n\r\n", false),
            ResponseBody::Length(0)
        );
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nxy"), Some(19));
    }
}
