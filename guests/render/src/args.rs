//! Command-line parsing for the renderer, with the limits that keep a tile inside wasm32 memory.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::tracer::View;

pub const USAGE: &str = "usage: render --width W --height H --x0 X --y0 Y --w TW --h TH \
[--samples S] [--out PATH]
  renders the tile [X, X+TW) x [Y, Y+TH) of a W x H image as binary PPM (P6)
  --samples S   samples per pixel, a perfect square from 1 to 256 (default 4, a 2x2 grid)
  --out PATH    where to write the tile (default /output/tile.ppm)";

/// Largest image side accepted.
pub const MAX_SIDE: u32 = 16_384;
/// Largest tile in pixels (48 MiB of RGB), well inside a 4 GiB wasm32 address space.
pub const MAX_TILE_PIXELS: u64 = 1 << 24;
const MAX_SAMPLES: u32 = 256;

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub view: View,
    pub out: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Render(Options),
}

/// Parses the arguments after the program name. Errors are one lowercase line.
pub fn parse(args: &[OsString]) -> Result<Parsed, String> {
    let mut width = None;
    let mut height = None;
    let mut x0 = None;
    let mut y0 = None;
    let mut tile_width = None;
    let mut tile_height = None;
    let mut samples = None;
    let mut out: Option<PathBuf> = None;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.to_str() else {
            return Err(format!(
                "argument {arg:?} is not valid UTF-8; pass flags such as --width"
            ));
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Parsed::Help);
        }
        let slot = match flag {
            "--width" => &mut width,
            "--height" => &mut height,
            "--x0" => &mut x0,
            "--y0" => &mut y0,
            "--w" => &mut tile_width,
            "--h" => &mut tile_height,
            "--samples" => &mut samples,
            "--out" => {
                let value = it
                    .next()
                    .ok_or_else(|| "--out needs a path after it".to_string())?;
                if out.replace(PathBuf::from(value)).is_some() {
                    return Err("--out is given twice; pass it once".to_string());
                }
                continue;
            }
            other => return Err(format!("unknown argument {other:?}; see the usage below")),
        };
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a number after it"))?;
        let number = value
            .to_str()
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| {
                format!("{flag} takes a whole number from 0 to 4294967295, not {value:?}")
            })?;
        if slot.replace(number).is_some() {
            return Err(format!("{flag} is given twice; pass it once"));
        }
    }

    let need = |v: Option<u32>, flag: &str| v.ok_or_else(|| format!("missing {flag}; add it"));
    let width = need(width, "--width")?;
    let height = need(height, "--height")?;
    let x0 = need(x0, "--x0")?;
    let y0 = need(y0, "--y0")?;
    let tile_width = need(tile_width, "--w")?;
    let tile_height = need(tile_height, "--h")?;
    let samples = samples.unwrap_or(4);

    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image size {width}x{height} is out of range; use 1 to {MAX_SIDE} for each side"
        ));
    }
    if tile_width == 0 || tile_height == 0 {
        return Err(format!(
            "tile size {tile_width}x{tile_height} is empty; use --w and --h of at least 1"
        ));
    }
    if u64::from(x0) + u64::from(tile_width) > u64::from(width)
        || u64::from(y0) + u64::from(tile_height) > u64::from(height)
    {
        return Err(format!(
            "tile at ({x0}, {y0}) of size {tile_width}x{tile_height} does not fit in the \
             {width}x{height} image; keep X+TW <= W and Y+TH <= H"
        ));
    }
    if u64::from(tile_width) * u64::from(tile_height) > MAX_TILE_PIXELS {
        return Err(format!(
            "tile of {tile_width}x{tile_height} pixels is too large; split it into tiles of at \
             most {MAX_TILE_PIXELS} pixels"
        ));
    }
    let grid = integer_sqrt(samples);
    if samples == 0 || samples > MAX_SAMPLES || grid * grid != samples {
        return Err(format!(
            "--samples {samples} is not a perfect square from 1 to {MAX_SAMPLES}; use one such \
             as 1, 4, 9 or 16"
        ));
    }

    Ok(Parsed::Render(Options {
        view: View {
            width,
            height,
            x0,
            y0,
            tile_width,
            tile_height,
            grid,
        },
        out: out.unwrap_or_else(|| PathBuf::from("/output/tile.ppm")),
    }))
}

fn integer_sqrt(n: u32) -> u32 {
    let mut r = 0u32;
    while (r + 1) * (r + 1) <= n && r < 65_535 {
        r += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn parses_a_tile_with_defaults() {
        let parsed = parse(&args(
            "--width 960 --height 540 --x0 60 --y0 120 --w 60 --h 60",
        ));
        assert_eq!(
            parsed,
            Ok(Parsed::Render(Options {
                view: View {
                    width: 960,
                    height: 540,
                    x0: 60,
                    y0: 120,
                    tile_width: 60,
                    tile_height: 60,
                    grid: 2,
                },
                out: PathBuf::from("/output/tile.ppm"),
            }))
        );
    }

    #[test]
    fn parses_samples_and_out() {
        let Ok(Parsed::Render(o)) = parse(&args(
            "--out /tmp/x.ppm --samples 9 --width 4 --height 4 --x0 0 --y0 0 --w 4 --h 4",
        )) else {
            panic!("expected options");
        };
        assert_eq!(o.view.grid, 3);
        assert_eq!(o.out, PathBuf::from("/tmp/x.ppm"));
    }

    #[test]
    fn rejects_bad_arguments() {
        let base = "--width 10 --height 10 --x0 0 --y0 0";
        for bad in [
            format!("{base} --w 11 --h 1"),
            format!("{base} --w 0 --h 1"),
            format!("{base} --w 1 --h 1 --samples 3"),
            format!("{base} --w 1 --h 1 --samples 0"),
            format!("{base} --w 1 --h 1 --bogus 1"),
            format!("{base} --w 1 --h -1"),
            format!("{base} --w 1 --h 1 --w 1"),
            format!("{base} --w 1"),
            format!("{base} --w 1 --h"),
            "--width 0 --height 1 --x0 0 --y0 0 --w 1 --h 1".to_string(),
            "--width 4294967295 --height 1 --x0 4294967295 --y0 0 --w 1 --h 1".to_string(),
        ] {
            let err = parse(&args(&bad)).expect_err(&bad);
            assert!(!err.ends_with('.'), "{err}");
        }
    }

    #[test]
    fn help_is_recognised() {
        assert_eq!(parse(&args("--help")), Ok(Parsed::Help));
    }

    #[test]
    fn integer_sqrt_is_exact_on_squares() {
        assert_eq!(integer_sqrt(1), 1);
        assert_eq!(integer_sqrt(4), 2);
        assert_eq!(integer_sqrt(8), 2);
        assert_eq!(integer_sqrt(256), 16);
    }
}
