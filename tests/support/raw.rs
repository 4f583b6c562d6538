//! A raw-recording HTTP/1.1 backend: records every byte it receives (all connections,
//! in arrival order) and answers each request it can frame with a fixed
//! `HTTP/1.1 200 OK`, `Content-Length: 2`, `ok`. Its framing is deliberately simple
//! (Content-Length, or chunked up to `0\r\n\r\n`): it only has to answer what sluice
//! forwards, and the tests look at the recording.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

pub struct RawBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl RawBackend {
    pub fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let rec = rec.clone();
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
                    let mut pending = Vec::new();
                    let mut chunk = [0u8; 16384];
                    loop {
                        let n = match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        rec.lock().unwrap().extend_from_slice(&chunk[..n]);
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some(len) = request_len(&pending) {
                            pending.drain(..len);
                            if conn.write_all(RESPONSE).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawBackend { addr, received }
    }

    /// Everything received so far, as text (lossy).
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// The length of the first complete request in `buf`, if there is one.
fn request_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    if text.contains("transfer-encoding: chunked") {
        let end = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head + length).then_some(head + length)
}
