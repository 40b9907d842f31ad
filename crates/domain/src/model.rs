//! What a model is, independent of its price: its id, its kind and image sizes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A fal endpoint id such as `fal-ai/flux-pro/v1.1`: the key of the model catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelId(String);

impl ModelId {
    /// Wraps an endpoint id; the catalog decides whether it exists.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The endpoint id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a model does; decides the input it takes and the output it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Prompt in, images out.
    TextToImage,
    /// Prompt plus input images in, images out.
    ImageEdit,
    /// Prompt in, text out (prompt enhancement).
    Llm,
    /// Text in, speech out.
    TextToSpeech,
    /// Prompt in, music or sound out.
    Audio,
}

impl ModelKind {
    /// True when the output is images.
    pub fn makes_images(self) -> bool {
        matches!(self, ModelKind::TextToImage | ModelKind::ImageEdit)
    }
}

/// An output size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageSize {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

/// A size string that is neither `WxH` nor a known preset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image size {0:?}: use WIDTHxHEIGHT (e.g. 1024x1024) or a preset such as square_hd")]
pub struct ImageSizeError(String);

/// fal's named sizes for the FLUX family.
const PRESETS: [(&str, u32, u32); 6] = [
    ("square_hd", 1024, 1024),
    ("square", 512, 512),
    ("portrait_4_3", 768, 1024),
    ("portrait_16_9", 576, 1024),
    ("landscape_4_3", 1024, 768),
    ("landscape_16_9", 1024, 576),
];

impl ImageSize {
    /// A size in pixels.
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// Width times height.
    pub fn pixels(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Pixels in one billed megapixel: fal counts 1024x1024 as one.
    pub const PIXELS_PER_MEGAPIXEL: u64 = 1024 * 1024;

    /// Megapixels rounded up per image, as fal bills them (1024x768 and 1024x1024 are 1 MP):
    /// at least 1.
    pub fn megapixels_rounded_up(self) -> u64 {
        self.pixels().div_ceil(Self::PIXELS_PER_MEGAPIXEL).max(1)
    }

    /// fal's preset name for this size, when there is one.
    pub fn preset_name(self) -> Option<&'static str> {
        PRESETS.iter().find(|(_, w, h)| *w == self.width && *h == self.height).map(|(name, _, _)| *name)
    }

    /// The reduced aspect ratio, e.g. `4:3`, for models that take a ratio instead of pixels.
    pub fn aspect_ratio(self) -> String {
        fn gcd(a: u32, b: u32) -> u32 {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        let g = gcd(self.width, self.height).max(1);
        format!("{}:{}", self.width / g, self.height / g)
    }
}

impl FromStr for ImageSize {
    type Err = ImageSizeError;

    /// `1024x768`, `1024×768` or a fal preset name such as `landscape_4_3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some((_, w, h)) = PRESETS.iter().find(|(name, _, _)| *name == s) {
            return Ok(ImageSize::new(*w, *h));
        }
        let err = || ImageSizeError(s.to_owned());
        let (w, h) = s.split_once(['x', 'X', '×']).ok_or_else(err)?;
        let width: u32 = w.trim().parse().map_err(|_| err())?;
        let height: u32 = h.trim().parse().map_err(|_| err())?;
        if width == 0 || height == 0 || width > 8192 || height > 8192 {
            return Err(err());
        }
        Ok(ImageSize::new(width, height))
    }
}

impl TryFrom<String> for ImageSize {
    type Error = ImageSizeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ImageSize> for String {
    fn from(value: ImageSize) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pixels_and_presets() {
        assert_eq!("1024x768".parse::<ImageSize>().unwrap(), ImageSize::new(1024, 768));
        assert_eq!("landscape_4_3".parse::<ImageSize>().unwrap(), ImageSize::new(1024, 768));
        assert_eq!("square".parse::<ImageSize>().unwrap(), ImageSize::new(512, 512));
        for bad in ["", "1024", "0x10", "axb", "99999x1", "huge"] {
            assert!(bad.parse::<ImageSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn megapixels_round_up_per_image() {
        assert_eq!(ImageSize::new(1024, 768).megapixels_rounded_up(), 1);
        assert_eq!(ImageSize::new(1024, 1024).megapixels_rounded_up(), 1);
        assert_eq!(ImageSize::new(1280, 1024).megapixels_rounded_up(), 2);
        assert_eq!(ImageSize::new(512, 512).megapixels_rounded_up(), 1);
        assert_eq!(ImageSize::new(2048, 2048).megapixels_rounded_up(), 4);
    }

    #[test]
    fn names_presets_and_ratios() {
        assert_eq!(ImageSize::new(1024, 1024).preset_name(), Some("square_hd"));
        assert_eq!(ImageSize::new(1000, 1000).preset_name(), None);
        assert_eq!(ImageSize::new(1024, 768).aspect_ratio(), "4:3");
        assert_eq!(ImageSize::new(1024, 576).aspect_ratio(), "16:9");
    }
}
