//! The `aws-chunked` content encoding: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n`
//! chunks, a final zero-size chunk, then optional trailer lines
//! (`x-amz-checksum-crc32:<base64>`, `x-amz-trailer-signature:<sig>`) and a blank line.
//!
//! [`Decoder`] is a push parser: feed it the body's frames as they arrive and it hands
//! back the payload bytes, so the framing never reaches the stored object. Every line
//! it buffers is bounded. Given a [`ChunkSigning`] (`--auth strict`), it also checks
//! each chunk's signature as the chunk ends, and the trailer's signature.

use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::auth::ChunkSigning;

/// Longest chunk header line (`<hex size>;chunk-signature=<64 hex>`), with room to spare.
const HEADER_LINE_BYTES_MAX: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const TRAILER_BYTES_MAX: usize = 16 * 1024;
/// Largest chunk size accepted (S3 itself caps chunks far lower).
const CHUNK_BYTES_MAX: u64 = 1 << 32;

/// One chunk's header: its length and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChunkHeader {
    size: u64,
    signature: Option<String>,
}

/// What was wrong with the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// A chunk header or trailer could not be parsed.
    Malformed(&'static str),
    /// The body ended before the final chunk and trailers.
    Incomplete,
    /// A chunk or trailer signature is missing or wrong (`--auth strict`).
    Signature,
}

#[derive(Debug)]
enum State {
    Header,
    Data { remaining: u64 },
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug)]
pub struct Decoder {
    state: State,
    line: BytesMut,
    trailer_bytes: usize,
    /// Trailer headers in arrival order, names in lower case.
    pub trailers: Vec<(String, String)>,
    /// The signature chain to check, and the current chunk's signature and running hash.
    signing: Option<(ChunkSigning, String, Sha256)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(None)
    }
}

impl Decoder {
    /// A decoder that checks chunk signatures when given `signing`.
    pub fn new(signing: Option<ChunkSigning>) -> Decoder {
        Decoder {
            state: State::Header,
            line: BytesMut::new(),
            trailer_bytes: 0,
            trailers: Vec::new(),
            signing: signing.map(|s| (s, String::new(), Sha256::new())),
        }
    }

    /// Checks the chunk that just ended against its signature.
    fn end_chunk(&mut self) -> Result<(), FramingError> {
        if let Some((chain, signature, hash)) = self.signing.as_mut() {
            let digest = hex::encode(std::mem::take(hash).finalize());
            if !chain.next_chunk(&digest, signature) {
                return Err(FramingError::Signature);
            }
        }
        Ok(())
    }

    /// Checks the trailer signature once the trailers are complete.
    fn end_trailers(&self) -> Result<(), FramingError> {
        let Some((chain, _, _)) = self.signing.as_ref().filter(|(chain, _, _)| chain.trailer_signed()) else { return Ok(()) };
        let mut canonical = String::new();
        let mut provided = None;
        for (name, value) in &self.trailers {
            match name.as_str() {
                "x-amz-trailer-signature" => provided = Some(value.as_str()),
                _ => canonical.push_str(&format!("{name}:{value}\n")),
            }
        }
        match provided {
            Some(provided) if chain.trailer(&canonical, provided) => Ok(()),
            _ => Err(FramingError::Signature),
        }
    }

    /// Feeds bytes of the encoded body; payload bytes are passed to `out` in order.
    pub fn push(&mut self, mut input: Bytes, out: &mut impl FnMut(Bytes)) -> Result<(), FramingError> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    let Some(line) = self.take_line(&mut input, HEADER_LINE_BYTES_MAX)? else { return Ok(()) };
                    let header = parse_header(&line)?;
                    if let Some((_, signature, _)) = self.signing.as_mut() {
                        *signature = header.signature.ok_or(FramingError::Signature)?;
                    }
                    if header.size == 0 {
                        self.end_chunk()?;
                        self.state = State::Trailers;
                    } else {
                        self.state = State::Data { remaining: header.size };
                    }
                }
                State::Data { remaining } => {
                    let n = remaining.min(input.len() as u64) as usize;
                    let data = input.split_to(n);
                    if let Some((_, _, hash)) = self.signing.as_mut() {
                        hash.update(&data);
                    }
                    out(data);
                    let left = remaining - n as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data { remaining: left } };
                }
                State::DataEnd => {
                    let Some(line) = self.take_line(&mut input, 2)? else { return Ok(()) };
                    if !line.is_empty() {
                        return Err(FramingError::Malformed("chunk data is longer than its declared size"));
                    }
                    self.end_chunk()?;
                    self.state = State::Header;
                }
                State::Trailers => {
                    let before = input.len();
                    let line = self.take_line(&mut input, TRAILER_BYTES_MAX)?;
                    self.trailer_bytes += before - input.len();
                    if self.trailer_bytes > TRAILER_BYTES_MAX {
                        return Err(FramingError::Malformed("trailers are too long"));
                    }
                    let Some(line) = line else { return Ok(()) };
                    // Some clients end a trailer with `\n\r\n`; AWS tolerates it.
                    let text = std::str::from_utf8(&line).map_err(|_| FramingError::Malformed("trailer is not UTF-8"))?.trim();
                    if text.is_empty() {
                        self.end_trailers()?;
                        self.state = State::Done;
                        continue;
                    }
                    let (name, value) = text.split_once(':').ok_or(FramingError::Malformed("trailer has no ':'"))?;
                    self.trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
                State::Done => {
                    // Bytes after the end of the encoding are ignored, as S3 does with padding.
                    input.advance(input.len());
                }
            }
        }
        Ok(())
    }

    /// Checks that the whole encoding arrived.
    pub fn finish(&mut self) -> Result<(), FramingError> {
        match self.state {
            State::Done => Ok(()),
            // A body that ends right after the final chunk's line has no trailers; accept it.
            State::Trailers if self.line.is_empty() && self.trailers.is_empty() => {
                self.end_trailers()?;
                self.state = State::Done;
                Ok(())
            }
            _ => Err(FramingError::Incomplete),
        }
    }

    /// Takes one `\n`-terminated line (without `\r\n`), buffering partial lines.
    fn take_line(&mut self, input: &mut Bytes, max: usize) -> Result<Option<BytesMut>, FramingError> {
        match input.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                if self.line.len() + pos > max + 1 {
                    return Err(FramingError::Malformed("line too long"));
                }
                self.line.extend_from_slice(&input[..pos]);
                input.advance(pos + 1);
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                Ok(Some(line))
            }
            None => {
                if self.line.len() + input.len() > max + 1 {
                    return Err(FramingError::Malformed("line too long"));
                }
                self.line.extend_from_slice(input);
                input.advance(input.len());
                Ok(None)
            }
        }
    }
}

fn parse_header(line: &[u8]) -> Result<ChunkHeader, FramingError> {
    let text = std::str::from_utf8(line).map_err(|_| FramingError::Malformed("chunk header is not UTF-8"))?;
    let (size, ext) = match text.split_once(';') {
        Some((size, ext)) => (size, Some(ext)),
        None => (text, None),
    };
    let size = size.trim();
    if size.is_empty() || size.len() > 16 {
        return Err(FramingError::Malformed("bad chunk size"));
    }
    let size = u64::from_str_radix(size, 16).map_err(|_| FramingError::Malformed("bad chunk size"))?;
    if size > CHUNK_BYTES_MAX {
        return Err(FramingError::Malformed("chunk too large"));
    }
    let signature = match ext {
        Some(ext) => {
            let sig = ext.trim().strip_prefix("chunk-signature=").ok_or(FramingError::Malformed("unknown chunk extension"))?;
            Some(sig.to_owned())
        }
        None => None,
    };
    Ok(ChunkHeader { size, signature })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, Decoder), FramingError> {
        let mut d = Decoder::new(None);
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            d.push(Bytes::copy_from_slice(chunk), &mut |b| out.extend_from_slice(&b))?;
        }
        d.finish()?;
        Ok((out, d))
    }

    #[track_caller]
    fn check(input: &str, payload: &str, trailers: &[(&str, &str)]) {
        for piece in [1, 2, 3, 7, 1000] {
            let (out, d) = decode_in_pieces(input.as_bytes(), piece).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), payload);
            let got: Vec<(&str, &str)> = d.trailers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            assert_eq!(got, trailers);
        }
    }

    #[test]
    fn unsigned_with_trailer() {
        check(
            "5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n",
            "hello world",
            &[("x-amz-checksum-crc32", "DUoRhQ==")],
        );
    }

    #[test]
    fn signed_chunks() {
        let sig = "a".repeat(64);
        let input = format!("5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n");
        check(&input, "hello", &[]);
    }

    #[test]
    fn tolerant_trailers() {
        check("0\r\nx-amz-checksum-crc32 : AAAAAA==\n\r\n\r\n", "", &[("x-amz-checksum-crc32", "AAAAAA==")]);
        check("0\r\n", "", &[]);
    }

    #[test]
    fn bad_framing_is_an_error() {
        assert!(decode_in_pieces(b"zz\r\nhello\r\n", 100).is_err());
        assert!(decode_in_pieces(b"5\r\nhelloX\r\n0\r\n\r\n", 100).is_err());
        assert_eq!(decode_in_pieces(b"5\r\nhel", 100).err(), Some(FramingError::Incomplete));
        assert!(decode_in_pieces(format!("{}\r\n", "1".repeat(5000)).as_bytes(), 100).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..512), piece in 1usize..64) {
            let _ = decode_in_pieces(&input, piece);
        }

        #[test]
        fn round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2000), size in 1usize..300, piece in 1usize..100) {
            let mut encoded = Vec::new();
            for chunk in payload.chunks(size) {
                encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
            }
            encoded.extend_from_slice(b"0\r\n\r\n");
            let (out, _) = decode_in_pieces(&encoded, piece).unwrap();
            prop_assert_eq!(out, payload);
        }
    }
}
