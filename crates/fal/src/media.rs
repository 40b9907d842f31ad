//! Outputs given inline as `data:` URIs (fal's `sync_mode`): decoded locally, within the
//! same size limit as downloads.

use mediagen_ports::{GenerationError, MediaBytes};

/// Decodes `data:<type>[;base64],<payload>`.
///
/// # Errors
/// `TooLarge` when the decoded size would pass `limit` (checked before decoding), `Other`
/// for a malformed URI.
pub(crate) fn decode_data_uri(uri: &str, limit: u64) -> Result<MediaBytes, GenerationError> {
    let malformed = || GenerationError::Other(anyhow::anyhow!("malformed data URI in fal's output"));
    let rest = uri.strip_prefix("data:").ok_or_else(malformed)?;
    let (meta, payload) = rest.split_once(',').ok_or_else(malformed)?;
    let is_base64 = meta.ends_with(";base64");
    let content_type = meta.trim_end_matches(";base64").split(';').next().filter(|t| !t.is_empty());
    let content_type = content_type.unwrap_or("application/octet-stream").to_owned();
    let estimate = if is_base64 { payload.len() as u64 / 4 * 3 } else { payload.len() as u64 };
    if estimate > limit {
        return Err(GenerationError::TooLarge { actual: estimate, limit });
    }
    let bytes = if is_base64 { base64_decode(payload).ok_or_else(malformed)? } else { payload.as_bytes().to_vec() };
    let extension = content_type.split('/').nth(1).unwrap_or("bin").split('+').next().unwrap_or("bin").to_owned();
    Ok(MediaBytes { bytes, content_type, file_name: format!("output.{extension}") })
}

/// Standard or URL-safe base64, padding optional, whitespace ignored.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_data_uris() {
        let m = decode_data_uri("data:image/png;base64,aGVsbG8gd29ybGQ=", 100).unwrap();
        assert_eq!(m.bytes, b"hello world");
        assert_eq!(m.content_type, "image/png");
        assert_eq!(m.file_name, "output.png");
        assert_eq!(decode_data_uri("data:image/png;base64,aGk", 100).unwrap().bytes, b"hi");
        assert!(matches!(
            decode_data_uri("data:image/png;base64,aGVsbG8gd29ybGQ=", 4),
            Err(GenerationError::TooLarge { limit: 4, .. })
        ));
        assert!(decode_data_uri("data:image/png;base64,a*b", 100).is_err());
        assert!(decode_data_uri("data:nocomma", 100).is_err());
    }
}
