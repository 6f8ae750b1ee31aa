//! The demo's picture: tiles in binary PPM (as the render guest writes them) stitched into one
//! image and saved as PNG.

use std::path::Path;

use anyhow::{Context, bail};

/// An RGB image, 8 bits per channel.
pub(crate) struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// A tile decoded from a PPM.
pub(crate) struct Tile {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) rgb: Vec<u8>,
}

impl Picture {
    pub(crate) fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rgb: vec![0; width as usize * height as usize * 3],
        }
    }

    /// Copies `tile` in with its top left corner at (`x0`, `y0`); refuses a tile that does not
    /// fit.
    pub(crate) fn place(&mut self, tile: &Tile, x0: u32, y0: u32) -> anyhow::Result<()> {
        if x0 + tile.width > self.width || y0 + tile.height > self.height {
            bail!(
                "a {}x{} tile at ({x0}, {y0}) does not fit a {}x{} picture",
                tile.width,
                tile.height,
                self.width,
                self.height
            );
        }
        let row_bytes = tile.width as usize * 3;
        for row in 0..tile.height as usize {
            let from = row * row_bytes;
            let to = ((y0 as usize + row) * self.width as usize + x0 as usize) * 3;
            self.rgb[to..to + row_bytes].copy_from_slice(&tile.rgb[from..from + row_bytes]);
        }
        Ok(())
    }

    pub(crate) fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.rgb)?;
        writer.finish()?;
        Ok(())
    }
}

/// Decodes a binary PPM (`P6`, maxval 255) as the render guest writes it.
pub(crate) fn decode_ppm(bytes: &[u8]) -> anyhow::Result<Tile> {
    let mut fields = Vec::with_capacity(4);
    let mut at = 0;
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'#' {
            while at < bytes.len() && bytes[at] != b'\n' {
                at += 1;
            }
            continue;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            bail!("the tile is not a complete PPM header");
        }
        fields.push(std::str::from_utf8(&bytes[start..at])?.to_owned());
    }
    if fields[0] != "P6" || fields[3] != "255" {
        bail!("the tile is not a binary PPM with maxval 255");
    }
    let width: u32 = fields[1].parse().context("the tile's width")?;
    let height: u32 = fields[2].parse().context("the tile's height")?;
    let pixels = &bytes[(at + 1).min(bytes.len())..];
    let expected = width as usize * height as usize * 3;
    if pixels.len() != expected {
        bail!(
            "the tile has {} pixel bytes, {expected} expected",
            pixels.len()
        );
    }
    Ok(Tile {
        width,
        height,
        rgb: pixels.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_decode_and_land_where_they_belong() {
        let mut ppm = b"P6\n# made by a test\n2 1\n255\n".to_vec();
        ppm.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let tile = decode_ppm(&ppm).unwrap();
        let mut picture = Picture::new(3, 2);
        picture.place(&tile, 1, 1).unwrap();
        assert_eq!(&picture.rgb[12..18], &[1, 2, 3, 4, 5, 6]);
        assert!(picture.place(&tile, 2, 1).is_err());
        assert!(decode_ppm(b"P6\n2 1\n255\n\x01").is_err());
        assert!(decode_ppm(b"P3\n1 1\n255\n\x01\x02\x03").is_err());
    }
}
