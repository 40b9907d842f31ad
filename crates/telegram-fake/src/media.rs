//! Just enough knowledge of files: picture dimensions from headers, MIME guesses, and ids that
//! look like Telegram's.

use rand::Rng;

/// Width and height from a PNG, JPEG or GIF header; `None` for anything else.
pub(crate) fn image_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() >= 24 {
        let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
        return Some((width, height));
    }
    if (bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) && bytes.len() >= 10 {
        let width = u16::from_le_bytes([bytes[6], bytes[7]]);
        let height = u16::from_le_bytes([bytes[8], bytes[9]]);
        return Some((u32::from(width), u32::from(height)));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return jpeg_dimensions(bytes);
    }
    None
}

fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            i += 1;
            continue;
        }
        let marker = bytes[i + 1];
        let length = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let is_frame = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            let height = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
            let width = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]);
            return Some((u32::from(width), u32::from(height)));
        }
        i += 2 + length;
    }
    None
}

/// The extension a photo gets in its `file_path`.
pub(crate) fn photo_extension(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "png"
    } else if bytes.starts_with(b"GIF8") {
        "gif"
    } else {
        "jpg"
    }
}

/// A MIME type from the file name, the part's content type, or the bytes, in that order.
pub(crate) fn guess_mime(file_name: Option<&str>, declared: Option<&str>, bytes: &[u8]) -> String {
    let by_extension = file_name.and_then(|name| name.rsplit_once('.')).and_then(|(_, ext)| {
        Some(match ext.to_ascii_lowercase().as_str() {
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            "webp" => "image/webp",
            "pdf" => "application/pdf",
            "txt" => "text/plain",
            "json" => "application/json",
            "zip" => "application/zip",
            "mp3" => "audio/mpeg",
            "ogg" | "oga" => "audio/ogg",
            "wav" => "audio/x-wav",
            "m4a" => "audio/mp4",
            "mp4" => "video/mp4",
            _ => return None,
        })
    });
    if let Some(mime) = by_extension {
        return mime.to_owned();
    }
    if let Some(declared) = declared.filter(|d| !d.is_empty() && *d != "application/octet-stream") {
        return declared.to_owned();
    }
    match image_dimensions(bytes).map(|_| photo_extension(bytes)) {
        Some("png") => "image/png".to_owned(),
        Some("gif") => "image/gif".to_owned(),
        Some(_) => "image/jpeg".to_owned(),
        None if bytes.starts_with(b"RIFF") => "audio/x-wav".to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A fresh `file_id` in Telegram's style: a type prefix and random base64url characters.
pub(crate) fn new_file_id(prefix: &str, rng: &mut impl Rng) -> String {
    let mut id = String::from(prefix);
    id.extend((0..48).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])));
    id
}

/// A `file_unique_id` that depends only on the content, as Telegram's does.
pub(crate) fn unique_id(bytes: &[u8]) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut id = String::from("AQAD");
    for _ in 0..11 {
        id.push(char::from(ALPHABET[(hash & 63) as usize]));
        hash >>= 6;
    }
    id
}

/// Sizes of the smaller copies Telegram lists before the original: 90 and 320 pixels on the
/// long side, each only when the original is larger.
pub(crate) fn thumbnail_sizes(width: u32, height: u32) -> Vec<(u32, u32)> {
    let long = width.max(height).max(1);
    [90u32, 320]
        .into_iter()
        .filter(|&side| long > side)
        .map(|side| {
            let scale = |v: u32| ((u64::from(v) * u64::from(side)) / u64::from(long)).max(1) as u32;
            (scale(width), scale(height))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn png_gif_and_jpeg_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(image_dimensions(&png), Some((640, 480)));
        assert_eq!(image_dimensions(b"GIF89a\x10\x00\x20\x00"), Some((16, 32)));
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0, 100, 0, 200, 3, 0, 0];
        assert_eq!(image_dimensions(&jpeg), Some((200, 100)));
        assert_eq!(image_dimensions(b"hello"), None);
    }

    #[test]
    fn ids_look_like_telegrams() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let id = new_file_id("AgACAgIAAxkBAAI", &mut rng);
        assert!(id.starts_with("AgAC") && id.len() > 50);
        assert_eq!(unique_id(b"abc"), unique_id(b"abc"));
        assert_ne!(unique_id(b"abc"), unique_id(b"abd"));
    }

    #[test]
    fn thumbnails_only_below_the_original() {
        assert_eq!(thumbnail_sizes(64, 64), vec![]);
        assert_eq!(thumbnail_sizes(1024, 512), vec![(90, 45), (320, 160)]);
    }

    #[test]
    fn mime_guesses() {
        assert_eq!(guess_mime(Some("a.PDF"), None, b""), "application/pdf");
        assert_eq!(guess_mime(Some(""), Some("text/csv"), b""), "text/csv");
        assert_eq!(guess_mime(None, None, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01"), "image/png");
    }
}
