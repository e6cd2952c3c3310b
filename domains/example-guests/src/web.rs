//! The web guest's HTTP, as small as a status page needs (pure, host-tested).
//!
//! Owns: knowing when a request's head has arrived, and the page: the
//! guest's uptime and how many requests it served.

use alloc::format;
use alloc::string::String;

/// Longest request head read; a longer one is answered 431.
pub const HEAD_MAX: usize = 2048;

/// Whether `buf` holds a whole request head (it ends with an empty line).
pub fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// The answer to a request head: the status page for `GET /`, 404 for
/// other paths, 400 for what is not HTTP, 431 for an oversized head.
pub fn respond(head: &[u8], uptime_ms: u64, served: u64) -> String {
    if head.len() > HEAD_MAX {
        return plain(431, "Request Header Fields Too Large", "head too large\n");
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = core::str::from_utf8(line).unwrap_or("").trim_end();
    let mut words = line.split(' ');
    let (method, path, version) = (words.next(), words.next(), words.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return plain(400, "Bad Request", "not HTTP/1.x\n");
    }
    if !matches!(method, Some("GET") | Some("HEAD")) {
        return plain(405, "Method Not Allowed", "GET only\n");
    }
    if path != Some("/") {
        return plain(404, "Not Found", "no such page\n");
    }
    let body = format!(
        "<!doctype html>\n<title>Xenolith web guest</title>\n<h1>Hello from a Xenolith guest</h1>\n<p>uptime: {}.{:03} s</p>\n<p>requests served: {}</p>\n",
        uptime_ms / 1000,
        uptime_ms % 1000,
        served
    );
    let body = if method == Some("HEAD") {
        String::new()
    } else {
        body
    };
    format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    )
}

fn plain(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_of_the_root_shows_uptime_and_count() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(head_complete(head));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        let r = respond(head, 12_345, 7);
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(r.contains("uptime: 12.345 s"));
        assert!(r.contains("requests served: 7"));
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[test]
    fn other_requests_get_errors() {
        assert!(respond(b"GET /x HTTP/1.0\r\n\r\n", 0, 0).starts_with("HTTP/1.0 404"));
        assert!(respond(b"POST / HTTP/1.0\r\n\r\n", 0, 0).starts_with("HTTP/1.0 405"));
        assert!(respond(b"hello\r\n\r\n", 0, 0).starts_with("HTTP/1.0 400"));
        assert!(respond(&[b'a'; HEAD_MAX + 1], 0, 0).starts_with("HTTP/1.0 431"));
        let head = respond(b"HEAD / HTTP/1.0\r\n\r\n", 0, 0);
        assert!(head.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }
}
