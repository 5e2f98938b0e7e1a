//! Connections: every request's head is read here, with a time limit and size limits, and
//! checked before hyper serves it, so that no client can hold the server and every refusal is
//! the API's one-line JSON error.
//!
//! - The head (request line and headers) must arrive within [`HEADER_TIMEOUT`]: a client that
//!   stalls mid-headers is dropped (408), and shutdown does not wait for it.
//! - A request line over [`MAX_URI`] is answered 414, a head over [`MAX_HEAD`] or with more
//!   than [`MAX_HEADERS`] headers 431, a head that is not HTTP/1.x 400.
//! - The `Host` header must name this server (see [`HostCheck`]), or the request is answered
//!   421: a web page cannot reach the server through DNS rebinding.
//! - A `Content-Length` over [`crate::MAX_BODY`] is answered 413 at once, before any body is
//!   read.
//!
//! Each connection carries one request (every response says `Connection: close`), so every
//! request passes these checks, also one pipelined behind another; a WebSocket upgrade is one
//! request too. On shutdown, connections that are still answering
//! get [`SHUTDOWN_GRACE`] to finish, then are closed.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for a request's head (request line and headers).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request line (method, path with query, version).
pub const MAX_URI: usize = 8 << 10;
/// Largest request head.
pub const MAX_HEAD: usize = 32 << 10;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;
/// How long shutdown waits for requests being answered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Which `Host` names the server answers to: `localhost`, the loopback addresses, the
/// `--host` it was given and the address it is bound to; when bound to every interface
/// (`0.0.0.0` or `::`), also any IP address and this machine's host name.
#[derive(Clone, Debug)]
pub struct HostCheck {
    names: Vec<String>,
    any_ip: bool,
}

impl HostCheck {
    /// The names for a server started with `--host host` and bound to `bound`.
    pub fn new(host: &str, bound: SocketAddr) -> HostCheck {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.push(host.trim_matches(['[', ']']).to_ascii_lowercase());
        names.push(bound.ip().to_string());
        let any_ip = bound.ip().is_unspecified();
        if any_ip {
            if let Some(h) = hostname() {
                names.push(h.to_ascii_lowercase());
            }
        }
        HostCheck { names, any_ip }
    }

    /// Whether a `Host` header value (with or without a port) names this server.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // "[::1]:8000", "[::1]", "127.0.0.1:8000", "localhost"
        let name = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip.to_string(),
                _ => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n.to_string(),
                _ => host.clone(),
            }
        };
        let name = name.trim_end_matches('.');
        self.names.iter().any(|n| n == name) || (self.any_ip && name.parse::<IpAddr>().is_ok())
    }
}

/// This machine's host name, where it can be read.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Accepts connections and serves `app` on each until `shutdown` completes; then waits up to
/// [`SHUTDOWN_GRACE`] for requests being answered.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    hosts: HostCheck,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection's task holds a receiver of `closing` (told when shutdown starts) and
    // of `open` (dropped when it ends): `open_tx.closed()` is every connection gone.
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let hosts = Arc::new(hosts);
    let app = app.layer(axum::middleware::map_response(close_after));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    // Out of file descriptors and the like: wait a little rather than spin.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (app, hosts) = (app.clone(), hosts.clone());
                let (mut closing, open) = (closing_rx.clone(), open_rx.clone());
                tokio::spawn(async move {
                    let _open = open;
                    // A head still arriving when shutdown starts is not waited for.
                    let io = tokio::select! {
                        io = checked_head(stream, &hosts) => io,
                        _ = closing.wait_for(|&c| c) => None,
                    };
                    let Some(io) = io else {
                        return;
                    };
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT);
                    let conn = b
                        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
                        .with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = closing.wait_for(|&c| c) => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(open_rx);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, open_tx.closed()).await;
}

/// Ends the connection after this response (`Connection: close`), so the next request comes on
/// a new connection through [`checked_head`]; a WebSocket's 101 keeps its `Connection: upgrade`.
/// (hyper's `keep_alive(false)` would also turn the 101's header into `close`.)
async fn close_after(mut r: axum::response::Response) -> axum::response::Response {
    if r.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS {
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    r
}

/// Reads and checks a request's head (see the module docs). Returns the stream with the head
/// put back in front, for hyper; or answers the error itself and returns `None`.
async fn checked_head(mut stream: TcpStream, hosts: &HostCheck) -> Option<Rewind> {
    let mut buf = Vec::with_capacity(1024);
    let verdict = match tokio::time::timeout(HEADER_TIMEOUT, read_head(&mut stream, &mut buf)).await
    {
        Err(_) => Err((
            408,
            "the request's headers did not arrive in time".to_string(),
        )),
        Ok(Err(_)) => return None, // the client went away
        Ok(Ok(())) => check_head(&buf, hosts),
    };
    match verdict {
        Ok(()) => Some(Rewind {
            head: buf,
            at: 0,
            inner: stream,
        }),
        Err((status, message)) => {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                stream.write_all(&error_response(status, &message)),
            )
            .await;
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// Reads until the blank line that ends a head, or until it is clear the head is too long.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > MAX_HEAD {
            return Ok(());
        }
        if !buf.contains(&b'\n') && buf.len() > MAX_URI {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The status and message for a head that must be refused.
fn check_head(buf: &[u8], hosts: &HostCheck) -> Result<(), (u16, String)> {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() > MAX_URI {
        return Err((414, format!("the request line is over {MAX_URI} bytes")));
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .filter(|&e| e <= MAX_HEAD);
    let Some(end) = end else {
        return Err((
            431,
            format!("the request's headers are over {MAX_HEAD} bytes"),
        ));
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err((400, "malformed HTTP request".into())),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((431, format!("more than {MAX_HEADERS} headers")));
        }
        Err(e) => return Err((400, format!("malformed HTTP request ({e})"))),
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect::<Vec<_>>()
    };
    match header("host").as_slice() {
        [] => return Err((400, "the request has no Host header".into())),
        [h] if hosts.allows(h) => {}
        [h] => {
            return Err((
                421,
                format!(
                    "Host '{}' is not this server's name; open it as http://localhost:PORT/ (or the --host it was given)",
                    h.chars().take(100).collect::<String>()
                ),
            ));
        }
        _ => return Err((400, "more than one Host header".into())),
    }
    for v in header("content-length") {
        match v.trim().parse::<u64>() {
            Ok(n) if n > crate::MAX_BODY as u64 => {
                return Err((
                    413,
                    format!(
                        "the body is {n} bytes; the most this server reads is {} bytes",
                        crate::MAX_BODY
                    ),
                ));
            }
            Ok(_) => {}
            Err(_) => return Err((400, "Content-Length is not a number".into())),
        }
    }
    Ok(())
}

/// A complete HTTP/1.1 response carrying the API's one-line JSON error; the connection closes.
fn error_response(status: u16, message: &str) -> Vec<u8> {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A stream whose first bytes (the head already read) are served again before the rest.
struct Rewind {
    head: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_servers_names_pass_the_host_check() {
        let local = HostCheck::new("127.0.0.1", "127.0.0.1:8000".parse().unwrap());
        for ok in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "[::1]",
            "localhost.",
        ] {
            assert!(local.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8000",
            "127.0.0.1.evil.example",
            "10.0.0.5:8000",
            "[::1]x",
            "",
        ] {
            assert!(!local.allows(bad), "{bad}");
        }
        let all = HostCheck::new("0.0.0.0", "0.0.0.0:8000".parse().unwrap());
        assert!(all.allows("10.0.0.5:8000") && all.allows("[fe80::1]:80"));
        assert!(!all.allows("rebind.evil.example:8000"));
    }

    #[test]
    fn refused_heads_get_the_status_they_deserve() {
        let h = HostCheck::new("127.0.0.1", "127.0.0.1:1".parse().unwrap());
        let code = |head: &[u8]| check_head(head, &h).err().map(|e| e.0);
        assert_eq!(code(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), None);
        assert_eq!(
            code(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
            Some(421)
        );
        assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(
            code(b"G\x01T / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            code(b"POST /api/encode HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000000000\r\n\r\n"),
            Some(413)
        );
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "a".repeat(MAX_URI)
        );
        assert_eq!(code(long.as_bytes()), Some(414));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let head = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
        assert_eq!(code(head.as_bytes()), Some(431));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nX: {}\r\n\r\n",
            "b".repeat(MAX_HEAD)
        );
        assert_eq!(code(big.as_bytes()), Some(431));
    }
}
