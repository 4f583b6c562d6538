//! Responses sluice writes itself (no route, no endpoints, upstream failures), shaped
//! like nginx's so clients and monitors that parse them keep working.

use bytes::Bytes;

/// The reason phrase nginx uses for the statuses sluice generates.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Authorization Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        408 => "Request Time-out",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "Error",
    }
}

/// nginx's HTML error body, with sluice's name where nginx prints its own.
pub fn html_body(status: u16) -> Bytes {
    html_page(&format!("{status} {}", reason(status)))
}

/// nginx's HTML error page with `title` (e.g. `400 Request Header Or Cookie Too Large`).
pub fn html_page(title: &str) -> Bytes {
    Bytes::from(format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>sluice</center>\r\n</body>\r\n</html>\r\n"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_names_the_status() {
        let b = super::html_body(503);
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.contains("<title>503 Service Temporarily Unavailable</title>"));
        assert!(s.contains("<h1>503 Service Temporarily Unavailable</h1>"));
    }
}
