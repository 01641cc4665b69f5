//! `sqlctl healthcheck`: probes a controller's `/healthz` and exits 0 (healthy) or 1 (unhealthy).
//!
//! Made for a container `HEALTHCHECK` / ECS `healthCheck` in an image with no shell and no curl:
//! `CMD ["sqlctl", "healthcheck"]`. It reads the same `SQLCTL_METRICS_ADDR` the controller serves
//! on, so in a container configured through the environment no flags are needed; an unspecified
//! bind address (`0.0.0.0`, `[::]`) is probed on loopback. Without that variable it probes
//! `127.0.0.1:9090`. `--url` probes any plain-HTTP URL instead.
//!
//! One HTTP/1.1 GET over a raw TCP connection, bounded by `--timeout` as a whole (connect, request
//! and response): no TLS stack or HTTP client to initialise, so a probe costs a few milliseconds.
//! Healthy means a `2xx` status line. Anything else prints one line saying why and exits 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Exit;
use crate::config::Context;
use crate::spec::quantity::parse_duration;

/// Where the probe goes when neither `--url` nor `SQLCTL_METRICS_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9090";

/// Responses larger than this are cut (only the status line matters).
const MAX_RESPONSE: usize = 8 * 1024;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The controller's --metrics-addr (an unspecified IP such as 0.0.0.0 is probed on loopback).
    #[arg(long, env = "SQLCTL_METRICS_ADDR", default_value = DEFAULT_ADDR)]
    pub metrics_addr: SocketAddr,
    /// Probe this plain-HTTP URL instead, e.g. http://10.0.3.7:9090/healthz (overrides --metrics-addr).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up (unhealthy) after this long, connection included.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Where to probe: `host:port` to connect to, the `Host` header and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    /// `/healthz` on a controller's metrics address.
    pub fn for_addr(addr: SocketAddr) -> Result<Target, String> {
        if addr.port() == 0 {
            return Err(format!(
                "metrics address {addr} has port 0 (the controller picked a port at random); pass --url with the port it logged"
            ));
        }
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Ok(Target { authority: SocketAddr::new(ip, addr.port()).to_string(), path: "/healthz".into() })
    }

    /// Parses `http://host[:port][/path]` (port 80 and path `/healthz` by default).
    pub fn parse_url(url: &str) -> Result<Target, String> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "--url {url}: only http:// is supported (got {scheme}://); probe the controller's plain-HTTP metrics port"
                ));
            }
            None => return Err(format!("--url {url}: expected http://HOST[:PORT][/PATH]")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/healthz"),
        };
        let bad = || format!("--url {url}: expected http://HOST[:PORT][/PATH] (IPv6 in brackets: http://[::1]:9090)");
        if authority.is_empty() || authority.contains('@') || path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        // `host`, `host:port`, `[v6]` or `[v6]:port`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((ip, "")) => (format!("[{ip}]"), None),
                Some((ip, p)) => (format!("[{ip}]"), Some(p.strip_prefix(':').ok_or_else(bad)?)),
                None => return Err(bad()),
            },
            None => match authority.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            },
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
            None => 80,
        };
        if host.is_empty() || host == "[]" {
            return Err(bad());
        }
        Ok(Target { authority: format!("{host}:{port}"), path: path.to_string() })
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

impl Args {
    pub async fn run(self, _g: &Context) -> anyhow::Result<()> {
        let target = match &self.url {
            Some(u) => Target::parse_url(u),
            None => Target::for_addr(self.metrics_addr),
        }
        .map_err(Exit::usage)?;
        match probe(&target, self.timeout).await {
            Ok(status) => {
                println!("healthy: GET {} returned {status}", target.url());
                Ok(())
            }
            Err(why) => Err(Exit::refused(format!("unhealthy: GET {}: {why}", target.url()))),
        }
    }
}

/// GETs the target once. `Ok` holds the status line's code and reason (e.g. `200 OK`) of a 2xx
/// answer; `Err` says in a few words why the target is not healthy.
pub async fn probe(target: &Target, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, get_status_line(target)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(e),
        Ok(Ok(line)) => {
            // `HTTP/1.1 200 OK`
            let mut parts = line.splitn(2, ' ');
            let version = parts.next().unwrap_or_default();
            let status = parts.next().unwrap_or_default().trim().to_string();
            let code: Option<u16> = status.get(..3).and_then(|c| c.parse().ok());
            match code {
                _ if !version.starts_with("HTTP/") => Err(format!("not an HTTP response: {:?}", short(&line))),
                Some(200..=299) => Ok(status),
                Some(_) => Err(format!("status {status}")),
                None => Err(format!("malformed status line {:?}", short(&line))),
            }
        }
    }
}

async fn get_status_line(target: &Target) -> Result<String, String> {
    let mut stream = TcpStream::connect(&target.authority).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the controller running with --metrics-addr on this port?)".to_string()
        }
        _ => format!("cannot connect: {e}"),
    })?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sqlctl-healthcheck/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending the request: {e}"))?;
    // Read until the status line is complete (or the peer closes).
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return Ok(String::from_utf8_lossy(&buf[..end]).trim_end().to_string());
        }
        if buf.len() >= MAX_RESPONSE {
            return Err("no status line in the first 8 KiB of the response".into());
        }
        let n = stream.read(&mut chunk).await.map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            return if buf.is_empty() {
                Err("connection closed without a response".into())
            } else {
                Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A loopback server answering every connection with `response`, after `delay`.
    async fn server(response: &'static str, delay: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut req = vec![0u8; 1024];
                    let n = s.read(&mut req).await.unwrap_or(0);
                    assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /healthz HTTP/1.1\r\n"));
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(response.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_2xx_answer_is_healthy() {
        let addr = server("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n", Duration::ZERO).await;
        let t = Target::for_addr(addr).unwrap();
        assert_eq!(probe(&t, Duration::from_secs(2)).await, Ok("200 OK".to_string()));
    }

    #[tokio::test]
    async fn an_error_status_is_unhealthy_with_the_status_as_reason() {
        let addr = server("HTTP/1.1 503 Service Unavailable\r\n\r\n", Duration::ZERO).await;
        let t = Target::for_addr(addr).unwrap();
        assert_eq!(probe(&t, Duration::from_secs(2)).await, Err("status 503 Service Unavailable".to_string()));
    }

    #[tokio::test]
    async fn garbage_and_silence_are_unhealthy() {
        let addr = server("SSH-2.0-OpenSSH\r\n", Duration::ZERO).await;
        let t = Target::for_addr(addr).unwrap();
        assert!(probe(&t, Duration::from_secs(2)).await.unwrap_err().starts_with("not an HTTP response"));

        let addr = server("HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(5)).await;
        let t = Target::for_addr(addr).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(probe(&t, Duration::from_millis(200)).await, Err("no answer within 200ms".to_string()));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t = Target::for_addr(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        assert!(probe(&t, Duration::from_secs(2)).await.unwrap_err().starts_with("connection refused"));
    }

    #[test]
    fn addresses_and_urls_resolve_to_targets() {
        let t = Target::for_addr("0.0.0.0:9090".parse().unwrap()).unwrap();
        assert_eq!(t, Target { authority: "127.0.0.1:9090".into(), path: "/healthz".into() });
        assert_eq!(Target::for_addr("[::]:9090".parse().unwrap()).unwrap().authority, "[::1]:9090");
        assert!(Target::for_addr("127.0.0.1:0".parse().unwrap()).unwrap_err().contains("port 0"));

        let t = Target::parse_url("http://10.0.3.7:9191/readyz").unwrap();
        assert_eq!(t, Target { authority: "10.0.3.7:9191".into(), path: "/readyz".into() });
        assert_eq!(Target::parse_url("http://localhost").unwrap().authority, "localhost:80");
        assert_eq!(Target::parse_url("http://[::1]:9090").unwrap().authority, "[::1]:9090");
        assert_eq!(Target::parse_url("http://[::1]").unwrap().authority, "[::1]:80");
        assert!(Target::parse_url("https://x/healthz").unwrap_err().contains("only http://"));
        assert!(Target::parse_url("localhost:9090").is_err());
        assert!(Target::parse_url("http://::1/healthz").is_err(), "IPv6 needs brackets");
        assert!(Target::parse_url("http://host:http/healthz").is_err());
        assert!(Target::parse_url("http://host:0/healthz").is_err());
        assert!(Target::parse_url("http:///healthz").is_err());
    }
}
