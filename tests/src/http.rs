//! A raw HTTP/1.1 client for talking to the server directly: requests sent byte for byte,
//! responses parsed with content-length, chunked or read-to-end bodies, bounded I/O times.

use dfs_common::proto::{HDR_DETAIL, HDR_ERROR};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A parsed HTTP/1.1 response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error code the server named (`x-dfs-error`), if any.
    pub fn code(&self) -> Option<&str> {
        self.header(HDR_ERROR)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `status, x-dfs-error, x-dfs-detail and body` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {}={:?} {}={:?} body={:?}",
            self.status,
            HDR_ERROR,
            self.header(HDR_ERROR),
            HDR_DETAIL,
            self.header(HDR_DETAIL),
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        )
    }
}

/// Connects to `addr` with bounded connect/read/write times.
pub fn connect(addr: &str, io_timeout: Duration) -> io::Result<TcpStream> {
    let sa = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
    s.set_read_timeout(Some(io_timeout))?;
    s.set_write_timeout(Some(io_timeout))?;
    Ok(s)
}

/// Sends `request` as it is, then reads and parses one response.
pub fn http_raw(addr: &str, request: &[u8]) -> io::Result<HttpResponse> {
    let mut s = connect(addr, Duration::from_secs(30))?;
    s.write_all(request)?;
    read_response(&mut s)
}

/// Sends a request with `Host`, `Content-Length` and `Connection: close` added to
/// `headers`, and reads the response.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        && (!body.is_empty() || method == "POST" || method == "PUT")
    {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_raw(addr, &bytes)
}

/// Reads one HTTP/1.1 response (content-length, chunked, or to end of stream).
pub fn read_response(s: &mut impl Read) -> io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a full response head ({} bytes: {:?})",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(s, rest)?
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {} of {len} bytes", rest.len()),
                ));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else {
        s.read_to_end(&mut rest)?;
        rest
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn read_chunked(s: &mut impl Read, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<()> {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body ended early",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            fill(&mut buf)?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size_text:?}"),
            )
        })?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(out);
        }
        while buf.len() < size + 2 {
            fill(&mut buf)?;
        }
        out.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_chunked_and_eof() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef";
        let resp = read_response(&mut r).unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(resp.header("x-a"), Some("b"));
        let mut r: &[u8] =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        let resp = read_response(&mut r).unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (404, &b"abcde"[..]));
        let mut r: &[u8] = b"HTTP/1.1 400 Bad\r\n\r\nrest";
        assert_eq!(read_response(&mut r).unwrap().body, b"rest");
    }
}
