//! The flexible checksums S3 validates and stores: CRC32, CRC32C, CRC64NVME, SHA1, SHA256.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::Sha1;
use sha2::{Digest, Sha256};

const CRC64_NVME: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_NVME);

/// A checksum algorithm, by its S3 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme, Algorithm::Sha1, Algorithm::Sha256];

    /// Parses `CRC32`, `crc32`, ... as the headers and XML spell them.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The name in `x-amz-checksum-algorithm` and in XML elements' suffixes.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The header that carries this checksum, `x-amz-checksum-crc32`, ...
    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    /// The XML element name, `ChecksumCRC32`, ...
    pub fn element(self) -> String {
        format!("Checksum{}", self.name())
    }

    /// Length of the raw digest, to check a base64 value's shape.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// Whether a multipart object gets a checksum of the whole object by default
    /// (CRC64NVME is full-object only; the others default to composite).
    pub fn full_object_only(self) -> bool {
        self == Algorithm::Crc64Nvme
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => Hasher::Crc32c(0),
            Algorithm::Crc64Nvme => Hasher::Crc64Nvme(CRC64_NVME.digest()),
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }
}

/// A running checksum.
pub enum Hasher {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc::Digest<'static, u64, crc::Table<16>>),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(bytes),
            Hasher::Crc32c(c) => *c = crc32c::crc32c_append(*c, bytes),
            Hasher::Crc64Nvme(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// The raw digest bytes.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Crc32c(c) => c.to_be_bytes().to_vec(),
            Hasher::Crc64Nvme(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// The checksum of part `number` (from 1) of a multipart object that kept its parts'
/// checksums, with their algorithm (the one of the object's own checksum).
pub fn of_part(meta: &crate::store::ObjectMeta, number: usize) -> Option<(Algorithm, &str)> {
    let algorithm = meta.checksums.keys().next().and_then(|name| Algorithm::parse(name))?;
    Some((algorithm, meta.part_checksums.get(number.checked_sub(1)?)?))
}

/// Adds a header for each stored checksum (`x-amz-checksum-crc32: ...`).
pub fn add_headers(
    mut builder: http::response::Builder,
    checksums: &std::collections::BTreeMap<String, String>,
) -> http::response::Builder {
    for (name, value) in checksums {
        if let Some(algorithm) = Algorithm::parse(name) {
            builder = builder.header(algorithm.header(), value);
        }
    }
    builder
}

/// Writes an element for each stored checksum (`<ChecksumCRC32>...</ChecksumCRC32>`).
pub fn write_elements(x: &mut crate::s3::xml::Xml, checksums: &std::collections::BTreeMap<String, String>) {
    for (name, value) in checksums {
        if let Some(algorithm) = Algorithm::parse(name) {
            x.leaf(&algorithm.element(), value);
        }
    }
}

pub fn to_base64(raw: &[u8]) -> String {
    BASE64.encode(raw)
}

/// Decodes a base64 checksum value and checks its length for `algorithm`.
pub fn decode(algorithm: Algorithm, value: &str) -> Option<Vec<u8>> {
    let raw = BASE64.decode(value.trim()).ok()?;
    (raw.len() == algorithm.digest_len()).then_some(raw)
}

/// The checksum of `bytes` as base64.
pub fn of(algorithm: Algorithm, bytes: &[u8]) -> String {
    let mut h = algorithm.hasher();
    h.update(bytes);
    to_base64(&h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(algorithm: Algorithm, expected_hex: &str) {
        let mut h = algorithm.hasher();
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(hex::encode(h.finish()), expected_hex);
    }

    #[test]
    fn check_values() {
        check(Algorithm::Crc32, "cbf43926");
        check(Algorithm::Crc32c, "e3069283");
        check(Algorithm::Crc64Nvme, "ae8b14860a799888");
        check(Algorithm::Sha1, "f7c3bc1d808e04732adf679965ccc34ca7ae3441");
        check(Algorithm::Sha256, "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225");
    }

    #[test]
    fn decode_checks_length() {
        assert!(decode(Algorithm::Crc32, "AAAAAA==").is_some());
        assert!(decode(Algorithm::Crc32, "AAAAAAAA").is_none());
        assert!(decode(Algorithm::Crc32, "not base64!").is_none());
    }
}
