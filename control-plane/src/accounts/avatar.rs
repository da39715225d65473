//! Avatars: an upload is decoded here, cropped to its centred square when it is not 1:1,
//! scaled down to at most [`SIDE`] pixels and re-encoded as PNG. Only that PNG is kept and
//! served; the uploaded bytes (and whatever metadata or trailing data they carried) are not.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, imageops::FilterType};

/// Largest upload accepted, in bytes.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;
/// Widest and tallest upload decoded, in pixels.
pub const MAX_PIXELS: u32 = 8192;
/// The kept avatar's side, at most.
pub const SIDE: u32 = 512;

/// Why an upload is not an avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvatarProblem {
    TooLarge,
    NotAnImage,
    Format,
    Dimensions,
}

impl AvatarProblem {
    pub fn code(&self) -> &'static str {
        match self {
            AvatarProblem::TooLarge => "avatar_too_large",
            AvatarProblem::NotAnImage => "avatar_unreadable",
            AvatarProblem::Format => "avatar_format",
            AvatarProblem::Dimensions => "avatar_dimensions",
        }
    }

    pub fn message(&self) -> String {
        match self {
            AvatarProblem::TooLarge => format!(
                "That picture is larger than {} MB; choose a smaller one.",
                MAX_BYTES / (1024 * 1024)
            ),
            AvatarProblem::NotAnImage => {
                "That file could not be read as a picture; choose a PNG, JPEG or WebP image."
                    .to_string()
            }
            AvatarProblem::Format => "Choose a PNG, JPEG or WebP picture.".to_string(),
            AvatarProblem::Dimensions => format!(
                "That picture is larger than {MAX_PIXELS}×{MAX_PIXELS} pixels; choose a smaller one."
            ),
        }
    }
}

/// The avatar made from an upload: a square PNG of at most [`SIDE`] pixels.
pub fn process(upload: &[u8]) -> Result<Vec<u8>, AvatarProblem> {
    if upload.len() > MAX_BYTES {
        return Err(AvatarProblem::TooLarge);
    }
    let reader = ImageReader::new(Cursor::new(upload))
        .with_guessed_format()
        .map_err(|_| AvatarProblem::NotAnImage)?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => {}
        Some(_) => return Err(AvatarProblem::Format),
        None => return Err(AvatarProblem::NotAnImage),
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|_| AvatarProblem::NotAnImage)?;
    if width > MAX_PIXELS || height > MAX_PIXELS {
        return Err(AvatarProblem::Dimensions);
    }
    let mut reader = ImageReader::new(Cursor::new(upload))
        .with_guessed_format()
        .map_err(|_| AvatarProblem::NotAnImage)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_PIXELS);
    limits.max_image_height = Some(MAX_PIXELS);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|_| AvatarProblem::NotAnImage)?;
    Ok(encode(&square(decoded)))
}

/// The centred square of `image`, scaled down to at most [`SIDE`].
fn square(image: DynamicImage) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    let side = width.min(height);
    let cropped = image.crop_imm((width - side) / 2, (height - side) / 2, side, side);
    let cropped = DynamicImage::ImageRgba8(cropped.to_rgba8());
    if side > SIDE {
        cropped.resize_exact(SIDE, SIDE, FilterType::Lanczos3)
    } else {
        cropped
    }
}

fn encode(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .expect("an RGBA image encodes as PNG in memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    /// A `width`×`height` picture: red left third, green middle, blue right third.
    fn stripes(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbaImage::from_fn(width, height, |x, _| match x * 3 / width {
            0 => Rgba([255, 0, 0, 255]),
            1 => Rgba([0, 255, 0, 255]),
            _ => Rgba([0, 0, 255, 255]),
        });
        let img = if format == ImageFormat::Jpeg {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(img).to_rgb8())
        } else {
            DynamicImage::ImageRgba8(img)
        };
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    /// PNG's chunk checksum (CRC-32, as in zlib).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn decoded(png: &[u8]) -> RgbaImage {
        image::load_from_memory_with_format(png, ImageFormat::Png)
            .unwrap()
            .to_rgba8()
    }

    #[test]
    fn a_wide_picture_keeps_its_centred_square() {
        // 300×100: the square is x 100..200, all green.
        let kept = decoded(&process(&stripes(300, 100, ImageFormat::Png)).unwrap());
        assert_eq!(kept.dimensions(), (100, 100));
        assert!(kept.pixels().all(|p| p.0 == [0, 255, 0, 255]));
    }

    #[test]
    fn a_large_picture_is_scaled_to_the_avatar_side() {
        let kept = decoded(&process(&stripes(2000, 1000, ImageFormat::Jpeg)).unwrap());
        assert_eq!(kept.dimensions(), (SIDE, SIDE));
        let centre = kept.get_pixel(SIDE / 2, SIDE / 2).0;
        assert!(
            centre[1] > 200 && centre[0] < 60 && centre[2] < 60,
            "{centre:?}"
        );
    }

    #[test]
    fn webp_is_read_and_png_is_kept() {
        let kept = process(&stripes(64, 64, ImageFormat::WebP)).unwrap();
        assert!(kept.starts_with(b"\x89PNG"));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            process(&vec![0u8; MAX_BYTES + 1]),
            Err(AvatarProblem::TooLarge)
        );
        assert_eq!(process(b"hello"), Err(AvatarProblem::NotAnImage));
        assert_eq!(
            process(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
            Err(AvatarProblem::Format)
        );
        // A PNG header claiming 9000×10 pixels: refused before decoding.
        let mut huge = stripes(10, 10, ImageFormat::Png);
        huge[16..20].copy_from_slice(&9000u32.to_be_bytes());
        let crc = crc32(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(process(&huge), Err(AvatarProblem::Dimensions));
    }
}
