//! A deliberately tiny HTTP/1.1 client: one request per connection
//! (`Connection: close`), the response read to EOF. Good for exact status
//! and header checks that real clients would hide.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names as sent; look them up with [`RawResponse::header`].
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// `message` of a `{"message": ...}` error body.
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no string \"message\" in {:?}", self.text()))
            .to_string()
    }

    /// A streamed body of concatenated JSON objects (pull progress, events).
    pub fn json_stream(&self) -> Vec<serde_json::Value> {
        serde_json::Deserializer::from_slice(&self.body)
            .into_iter::<serde_json::Value>()
            .map(|v| v.unwrap_or_else(|e| panic!("bad JSON stream ({e}): {:?}", self.text())))
            .collect()
    }
}

/// Sends one request on `stream` and reads the whole response.
pub fn request<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: mydocker-compat-tests\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;

    let mut raw = vec![];
    stream.read_to_end(&mut raw)?;
    parse(&raw, method == "HEAD")
}

/// One request to `host:port` over TCP (the test registry, fake registries).
pub fn tcp_request(
    hostport: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let s = TcpStream::connect(hostport).unwrap_or_else(|e| panic!("connect {hostport}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    request(s, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{hostport}{path}: {e}"))
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn parse(raw: &[u8], head: bool) -> std::io::Result<RawResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no header end in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if head {
        rest.to_vec()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = vec![];
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            // Connection closed mid-stream: keep what arrived.
            return Ok(out);
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let take = size.min(b.len());
        out.extend_from_slice(&b[..take]);
        b = &b[take..];
        if b.starts_with(b"\r\n") {
            b = &b[2..];
        }
    }
}
