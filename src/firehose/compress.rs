//! The CompressionFormats of a delivery stream, byte-compatible with what AWS writes:
//! one gzip member; a ZIP with one DEFLATE entry named by a UUID; snappy-java's stream
//! framing (`Snappy`); Hadoop's block framing (`HADOOP_SNAPPY`). Every output is a pure
//! function of its inputs, so a sealed batch replayed after a crash gives the same bytes.

use std::io::Write;

/// snappy-java compresses in blocks of this many input bytes.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// `0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00`, then version 1 and compatible version 1.
const SNAPPY_JAVA_HEADER: [u8; 16] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zip,
    Snappy,
    HadoopSnappy,
}

impl Compression {
    pub const NAMES: [&'static str; 5] = ["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY"];

    /// Parses the case-exact enum value.
    pub fn parse(name: &str) -> Option<Compression> {
        Some(match name {
            "UNCOMPRESSED" => Compression::Uncompressed,
            "GZIP" => Compression::Gzip,
            "ZIP" => Compression::Zip,
            "Snappy" => Compression::Snappy,
            "HADOOP_SNAPPY" => Compression::HadoopSnappy,
            _ => return None,
        })
    }

    /// The extension AWS gives objects when no FileExtension is set.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
        }
    }

    /// The object's Content-Encoding.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Uncompressed => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zip => Some("zip"),
            Compression::Snappy => Some("snappy-java"),
            Compression::HadoopSnappy => Some("hadoop-snappy"),
        }
    }

    /// Compresses `data`; `zip_entry` names the ZIP archive's one entry.
    pub fn compress(self, data: &[u8], zip_entry: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::Uncompressed => Ok(data.to_vec()),
            Compression::Gzip => {
                // A fixed header (no name, mtime 0), so the same input gives the same bytes.
                let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
                encoder.write_all(data)?;
                encoder.finish()
            }
            Compression::Zip => {
                let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .last_modified_time(zip::DateTime::default())
                    .large_file(data.len() >= u32::MAX as usize);
                writer.start_file(zip_entry, options).map_err(std::io::Error::other)?;
                writer.write_all(data)?;
                Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
            }
            Compression::Snappy => {
                let mut out = SNAPPY_JAVA_HEADER.to_vec();
                let mut encoder = snap::raw::Encoder::new();
                for block in data.chunks(SNAPPY_BLOCK_BYTES) {
                    let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                    out.extend_from_slice(&compressed);
                }
                Ok(out)
            }
            Compression::HadoopSnappy => {
                let mut out = Vec::new();
                let mut encoder = snap::raw::Encoder::new();
                for block in data.chunks(SNAPPY_BLOCK_BYTES) {
                    let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                    out.extend_from_slice(&compressed);
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| format!("record {i}\n").into_bytes()).collect()
    }

    #[test]
    fn gzip_round_trips_and_is_deterministic() {
        let data = sample();
        let a = Compression::Gzip.compress(&data, "").unwrap();
        assert_eq!(a, Compression::Gzip.compress(&data, "").unwrap());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn zip_has_one_named_entry() {
        let data = sample();
        let bytes = Compression::Zip.compress(&data, "entry-name").unwrap();
        assert_eq!(bytes, Compression::Zip.compress(&data, "entry-name").unwrap());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "entry-name");
        let mut out = Vec::new();
        entry.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn snappy_java_framing() {
        let data = sample();
        let bytes = Compression::Snappy.compress(&data, "").unwrap();
        assert_eq!(&bytes[..16], &SNAPPY_JAVA_HEADER);
        let mut out = Vec::new();
        let mut rest = &bytes[16..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            out.extend(snap::raw::Decoder::new().decompress_vec(&rest[4..4 + len]).unwrap());
            rest = &rest[4 + len..];
        }
        assert_eq!(out, data);
    }

    #[test]
    fn hadoop_snappy_framing() {
        let data = sample();
        let bytes = Compression::HadoopSnappy.compress(&data, "").unwrap();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let raw = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let len = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
            let block = snap::raw::Decoder::new().decompress_vec(&rest[8..8 + len]).unwrap();
            assert_eq!(block.len(), raw);
            assert!(raw <= SNAPPY_BLOCK_BYTES);
            out.extend(block);
            rest = &rest[8 + len..];
        }
        assert_eq!(out, data);
    }

    #[test]
    fn names_are_case_exact() {
        assert_eq!(Compression::parse("Snappy"), Some(Compression::Snappy));
        assert_eq!(Compression::parse("SNAPPY"), None);
        assert_eq!(Compression::parse("gzip"), None);
    }
}
