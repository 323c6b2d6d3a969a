//! A minimal HTTP/1.1 client over one tokio `TcpStream`: keep-alive, `Content-Length` and
//! chunked response bodies, nothing else. It is all a load generator needs to talk to a site
//! on 127.0.0.1, and it keeps an idle connection down to its socket and a small buffer
//! (10,000 parked long-polls must not make the load generator the bottleneck).
//!
//! Sending and reading are separate calls so that a caller can count a request as *sent*
//! (a long-poll is parked at the site) before it waits for the answer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest response head and body accepted; a site's answers are far smaller.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request. Bodies are JSON; `zstd` marks a body already compressed.
pub struct Request<'a> {
    pub method: &'static str,
    pub path: &'a str,
    /// The bearer token (`Authorization: Bearer …`), if any.
    pub bearer: Option<&'a str>,
    pub body: Option<&'a [u8]>,
    pub zstd: bool,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str, bearer: Option<&'a str>) -> Request<'a> {
        Request {
            method: "GET",
            path,
            bearer,
            body: None,
            zstd: false,
        }
    }

    pub fn post(path: &'a str, bearer: Option<&'a str>, body: &'a [u8]) -> Request<'a> {
        Request {
            method: "POST",
            path,
            bearer,
            body: Some(body),
            zstd: false,
        }
    }
}

/// A response with its whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as `T` for a 2xx status; otherwise an error quoting the site's message.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        if !(200..300).contains(&self.status) {
            let text = String::from_utf8_lossy(&self.body);
            let message = serde_json::from_slice::<invsync_proto::wire::ErrorBody>(&self.body)
                .map(|b| b.error)
                .unwrap_or_else(|_| text.chars().take(200).collect());
            bail!("{what}: HTTP {}: {message}", self.status);
        }
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "{what}: unexpected answer {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One keep-alive connection to the site.
pub struct Conn {
    stream: TcpStream,
    host: String,
    /// Bytes read but not yet consumed; empty between responses.
    buf: Vec<u8>,
    /// Set when the site said `Connection: close` (or the connection broke): do not reuse.
    closed: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host: addr.to_string(),
            buf: Vec::new(),
            closed: false,
        })
    }

    /// Connects within `timeout`.
    pub async fn connect_timeout(addr: SocketAddr, timeout: Duration) -> Result<Conn> {
        tokio::time::timeout(timeout, Conn::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} took longer than {timeout:?}"))?
    }

    /// False once the site closed the connection or an exchange failed.
    pub fn reusable(&self) -> bool {
        !self.closed
    }

    /// Writes one request.
    pub async fn send(&mut self, req: &Request<'_>) -> Result<()> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\nuser-agent: invsync-loadgen/{}\r\n",
            req.method,
            req.path,
            self.host,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = req.bearer {
            head.push_str("authorization: Bearer ");
            head.push_str(token);
            head.push_str("\r\n");
        }
        if let Some(body) = req.body {
            head.push_str("content-type: application/json\r\n");
            if req.zstd {
                head.push_str("content-encoding: zstd\r\n");
            }
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if let Some(body) = req.body {
            bytes.extend_from_slice(body);
        }
        if let Err(e) = self.stream.write_all(&bytes).await {
            self.closed = true;
            return Err(e).context("cannot send the request");
        }
        Ok(())
    }

    /// Reads one response.
    pub async fn read_response(&mut self) -> Result<Response> {
        let r = self.read_inner().await;
        if r.is_err() {
            self.closed = true;
        }
        // Give back the memory of a large answer; an idle connection keeps no buffer.
        self.buf = Vec::new();
        r
    }

    /// Sends a request and reads its response within `timeout`.
    pub async fn call(&mut self, req: &Request<'_>, timeout: Duration) -> Result<Response> {
        let exchange = async {
            self.send(req).await?;
            self.read_response().await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => {
                self.closed = true;
                bail!(
                    "{} {} got no answer within {timeout:?}",
                    req.method,
                    req.path
                )
            }
        }
    }

    /// Reads what has arrived. It waits for readability before it allocates anything, so a
    /// parked long-poll holds no read buffer.
    async fn fill(&mut self) -> Result<()> {
        loop {
            self.stream
                .readable()
                .await
                .context("cannot read the response")?;
            let mut chunk = [0u8; 4096];
            match self.stream.try_read(&mut chunk) {
                Ok(0) => bail!("the site closed the connection"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e).context("cannot read the response"),
            }
        }
    }

    async fn read_inner(&mut self) -> Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response head longer than {MAX_HEAD} bytes");
            }
            self.fill().await?;
        };
        let head =
            std::str::from_utf8(&self.buf[..head_end]).context("response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse().context("bad Content-Length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.closed = true;
            }
        }
        self.buf.drain(..head_end + 4);
        let body = if chunked {
            self.read_chunked().await?
        } else {
            let length = length.unwrap_or(0);
            if length > MAX_BODY {
                bail!("response body of {length} bytes is too large");
            }
            while self.buf.len() < length {
                self.fill().await?;
            }
            self.buf.drain(..length).collect()
        };
        Ok(Response { status, body })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).context("bad chunk size")?;
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
            self.buf.drain(..line_end + 2);
            if body.len() + size > MAX_BODY {
                bail!("chunked response body is too large");
            }
            // The chunk, then its CRLF (after the last chunk: trailers, then CRLF).
            if size == 0 {
                loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        let empty = i == 0;
                        self.buf.drain(..i + 2);
                        if empty {
                            return Ok(body);
                        }
                    } else {
                        self.fill().await?;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Serves `answers` in turn on one connection, ignoring what is asked.
    async fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for a in answers {
                let mut seen = Vec::new();
                while find(&seen, b"\r\n\r\n").is_none() {
                    let mut b = [0u8; 1024];
                    let n = s.read(&mut b).await.unwrap();
                    seen.extend_from_slice(&b[..n]);
                }
                s.write_all(a.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn keep_alive_length_and_chunked() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"wake\":true}",
            "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"err\r\n9\r\nor\":\"no\"}\r\n0\r\n\r\n",
        ])
        .await;
        let mut c = Conn::connect(addr).await.unwrap();
        let t = Duration::from_secs(5);
        let r = c
            .call(&Request::post("/cap/v1/wait", Some("tok"), b"{}"), t)
            .await
            .unwrap();
        let w: invsync_proto::wire::WaitResponse = r.json("wait").unwrap();
        assert!(w.wake);
        let r = c.call(&Request::get("/x", None), t).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, br#"{"error":"no"}"#);
        let e = r.json::<serde_json::Value>("x").unwrap_err().to_string();
        assert!(e.contains("HTTP 404: no"), "{e}");
        assert!(c.reusable());
    }
}
