//! Starts a real firelake process on port 0 with a fresh data directory, and the
//! clients the tests talk to it with.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns};

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh temporary data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("data");
        let mut server = Server::start_in(&dir, args);
        server._temp = Some(temp);
        server
    }

    /// A server on `data_dir`, which outlives it.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_firelake"))
            .args(["--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", std::env::var("FIRELAKE_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start firelake");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the ready line");
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}"));
        let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches(',').parse().expect("address");
        Server { child, addr, data_dir: data_dir.canonicalize().expect("data dir"), _temp: None }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGTERM, then wait for the process to exit; answers whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// S3 client with path-style addressing.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint(), true).await
    }

    /// S3 client with virtual-hosted addressing against `localhost:<port>`, whose
    /// `<bucket>.localhost` names a resolver in the test maps to loopback.
    pub async fn s3_virtual_host(&self) -> aws_sdk_s3::Client {
        s3_client(&format!("http://localhost:{}", self.port()), false).await
    }

    /// Sends raw bytes on a new connection and returns the whole response.
    pub fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request).expect("send");
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resolves every name to 127.0.0.1, as `*.localhost` does on systems that synthesise it.
#[derive(Debug, Clone)]
struct LoopbackResolver;

impl ResolveDns for LoopbackResolver {
    fn resolve_dns<'a>(&'a self, _name: &'a str) -> DnsFuture<'a> {
        DnsFuture::ready(Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]))
    }
}

pub async fn s3_client(endpoint: &str, path_style: bool) -> aws_sdk_s3::Client {
    s3_client_as(endpoint, path_style, "test", "test").await
}

/// An S3 client that signs with the given access key.
pub async fn s3_client_as(endpoint: &str, path_style: bool, access_key: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .build_with_resolver(LoopbackResolver);
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(access_key, secret, None, None, "tests"))
        .endpoint_url(endpoint)
        .http_client(http)
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A name unique within the test run, valid as a bucket name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid_like()[..12])
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(bytes))
}

/// One HTTP/1.1 response read off a connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (a status line, headers, and a Content-Length body; none for HEAD).
pub fn read_response(reader: &mut BufReader<TcpStream>, head: bool) -> RawResponse {
    try_read_response(reader, head).expect("a response")
}

/// Reads one response, or the error that stopped it (the server died, the peer reset).
pub fn try_read_response(reader: &mut BufReader<TcpStream>, head: bool) -> std::io::Result<RawResponse> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 =
        line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("bad header {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = RawResponse { status, headers, body: Vec::new() };
    if status != 100 && !head {
        let len: usize = response.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        response.body = vec![0; len];
        reader.read_exact(&mut response.body)?;
    }
    Ok(response)
}

/// A keep-alive connection for raw requests.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(server: &Server) -> Conn {
        Conn::open_addr(server.addr)
    }

    pub fn open_addr(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn { reader: BufReader::new(stream) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    pub fn request(&mut self, bytes: &[u8]) -> RawResponse {
        self.send(bytes);
        let head = bytes.starts_with(b"HEAD ");
        read_response(&mut self.reader, head)
    }
}

impl Server {
    /// Firehose client for this server.
    pub async fn firehose(&self) -> aws_sdk_firehose::Client {
        self.firehose_as("test", "test").await
    }

    /// Firehose client that signs with the given access key.
    pub async fn firehose_as(&self, access_key: &str, secret: &str) -> aws_sdk_firehose::Client {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_firehose::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_firehose::config::Credentials::new(access_key, secret, None, None, "tests"))
            .endpoint_url(self.endpoint())
            .load()
            .await;
        aws_sdk_firehose::Client::new(&shared)
    }

    /// POST /_firelake/flush; answers the HTTP status and body.
    pub fn flush(&self, stream: Option<&str>) -> RawResponse {
        let path = stream.map(|s| format!("/_firelake/flush?stream={s}")).unwrap_or_else(|| "/_firelake/flush".to_owned());
        Conn::open(self).request(format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").as_bytes())
    }
}

impl Server {
    /// SIGKILL: the process dies mid-whatever, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who signs a raw request, and when.
pub struct Signer {
    pub access_key: String,
    pub secret: String,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
}

impl Signer {
    /// Signs as of now, as a client would.
    pub fn now(access_key: &str, secret: &str) -> Signer {
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        Signer { access_key: access_key.to_owned(), secret: secret.to_owned(), amz_date }
    }

    /// Builds a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` PUT with real seed, chunk
    /// and trailer signatures, as the AWS documentation lays them out.
    pub fn chunked_put(&self, host: &str, path: &str, chunks: &[&[u8]], trailer: Option<(&str, String)>) -> Vec<u8> {
        use firelake::sigv4;
        let date = &self.amz_date;
        let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
        let decoded: usize = chunks.iter().map(|c| c.len()).sum();
        let mode = if trailer.is_some() { "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" } else { "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" };
        let trailer_header = trailer.as_ref().map(|(name, _)| format!("x-amz-trailer:{name}\n")).unwrap_or_default();
        let signed = if trailer.is_some() {
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-trailer"
        } else {
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length"
        };
        let canonical = format!(
            "PUT\n{path}\n\ncontent-encoding:aws-chunked\nhost:{host}\nx-amz-content-sha256:{mode}\nx-amz-date:{date}\nx-amz-decoded-content-length:{decoded}\n{trailer_header}\n{signed}\n{mode}"
        );
        let key = sigv4::signing_key(&self.secret, &date[..8], "us-east-1", "s3");
        let seed = sigv4::signature(&key, &sigv4::string_to_sign(date, &scope, &canonical));
        let mut body = Vec::new();
        let mut previous = seed.clone();
        for chunk in chunks.iter().copied().chain(std::iter::once(&b""[..])) {
            let sig = sigv4::signature(&key, &sigv4::chunk_string_to_sign(date, &scope, &previous, &sigv4::sha256_hex(chunk)));
            body.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            if !chunk.is_empty() || trailer.is_none() {
                body.extend_from_slice(b"\r\n");
            }
            previous = sig;
        }
        if let Some((name, value)) = &trailer {
            let trailer_line = format!("{name}:{value}\n");
            let sts = format!("AWS4-HMAC-SHA256-TRAILER\n{date}\n{scope}\n{previous}\n{}", sigv4::sha256_hex(trailer_line.as_bytes()));
            let trailer_sig = sigv4::signature(&key, &sts);
            body.extend_from_slice(format!("{name}:{value}\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n").as_bytes());
        }
        let mut request = format!(
            "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Encoding: aws-chunked\r\nX-Amz-Content-Sha256: {mode}\r\nX-Amz-Date: {date}\r\nX-Amz-Decoded-Content-Length: {decoded}\r\n{}Authorization: AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={seed}\r\nContent-Length: {}\r\n\r\n",
            trailer.as_ref().map(|(name, _)| format!("X-Amz-Trailer: {name}\r\n")).unwrap_or_default(),
            self.access_key,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    }
}

impl Server {
    /// The server's process id (to read its `/proc` entry).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
