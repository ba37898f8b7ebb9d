//! `--lambda-endpoint`: invocations of functions firelake does not hold go to another
//! Lambda Invoke API (AWS SAM local, LocalStack, ...) over plain HTTP/1.1, signed with
//! SigV4 (the credentials of firelake's own `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`,
//! or `test`/`test`), one connection per invocation.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::FunctionRef;
use super::error::LambdaError;
use super::runtime::Outcome;
use crate::sigv4;

/// The longest a forwarded invocation may take: Lambda's longest timeout and some.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(930);
/// The largest answer read back: the payload limit and room for headers.
const ANSWER_BYTES_MAX: usize = super::INVOKE_BYTES_MAX + 64 * 1024;

/// Checks a `--lambda-endpoint` value: `http://host[:port]`, no path.
pub fn parse_endpoint(url: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("--lambda-endpoint {url:?} must start with http:// (https is not supported)"));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(format!("--lambda-endpoint {url:?} must be http://host[:port], without a path"));
    }
    Ok(host.to_owned())
}

pub async fn invoke(host: &str, reference: &FunctionRef, payload: Bytes) -> Result<Outcome, LambdaError> {
    let unreachable = |err: String| LambdaError::Upstream(format!("the Lambda endpoint http://{host} failed: {err}"));
    let answer = tokio::time::timeout(FORWARD_TIMEOUT, exchange(host, reference, &payload))
        .await
        .map_err(|_| unreachable("no answer in time".to_owned()))?
        .map_err(|err| unreachable(err.to_string()))?;
    let (status, headers, body) = parse_answer(&answer).ok_or_else(|| unreachable("the answer is not HTTP/1.1".to_owned()))?;
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    match status {
        200..=299 => Ok(Outcome { payload: Bytes::from(body), function_error: header("x-amz-function-error"), log: String::new() }),
        404 => Err(reference.not_found()),
        _ => {
            let code = header("x-amzn-errortype").unwrap_or_default();
            Err(unreachable(format!("HTTP {status} {code} {}", String::from_utf8_lossy(&body))))
        }
    }
}

async fn exchange(host: &str, reference: &FunctionRef, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let function = reference.arn().replace(':', "%3A");
    let path = format!("/2015-03-31/functions/{function}/invocations");
    let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let access_key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".to_owned());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".to_owned());
    let scope = format!("{}/{}/lambda/aws4_request", &amz_date[..8], reference.region);
    let payload_hash = sigv4::sha256_hex(payload);
    // Lambda signs the path encoded twice (every service but S3 does).
    let canonical_path = path.replace('%', "%25");
    let canonical = format!("POST\n{canonical_path}\n\nhost:{host}\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{payload_hash}");
    let key = sigv4::signing_key(&secret, &amz_date[..8], &reference.region, "lambda");
    let signature = sigv4::signature(&key, &sigv4::string_to_sign(&amz_date, &scope, &canonical));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Amz-Date: {amz_date}\r\nX-Amz-Invocation-Type: RequestResponse\r\nAuthorization: AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(payload).await?;
    let mut answer = Vec::new();
    (&mut stream).take(ANSWER_BYTES_MAX as u64).read_to_end(&mut answer).await?;
    Ok(answer)
}

/// An HTTP/1.1 answer: status, headers (names in lower case) and body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Parses an answer whose body has a Content-Length, is chunked, or runs to the end.
fn parse_answer(answer: &[u8]) -> Option<Answer> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let rest = &answer[end + 4..];
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + rest[at..].windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[at..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
        body
    } else {
        match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            Some(len) => rest.get(..len)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("http://127.0.0.1:3001"), Ok("127.0.0.1:3001".to_owned()));
        assert_eq!(parse_endpoint("http://localhost:4566/"), Ok("localhost:4566".to_owned()));
        assert!(parse_endpoint("https://lambda.us-east-1.amazonaws.com").is_err());
        assert!(parse_endpoint("http://host/path").is_err());
    }

    #[test]
    fn answers() {
        let (status, headers, body) =
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amz-Function-Error: Unhandled\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        assert!(headers.contains(&("x-amz-function-error".to_owned(), "Unhandled".to_owned())));
        let (_, _, body) = parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1\r\n \r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"{} ");
        assert!(parse_answer(b"garbage").is_none());
    }
}
