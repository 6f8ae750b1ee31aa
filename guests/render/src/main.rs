//! `render`: a deterministic ray tracer guest that renders one tile of the demo image to a PPM.
//!
//! Exit codes: 0 on success, 1 if the tile cannot be written, 2 for bad arguments.

mod args;
mod tracer;
mod vec3;

use std::ffi::OsString;
use std::fs;
use std::process::ExitCode;

use args::{Parsed, USAGE};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let options = match args::parse(&argv) {
        Ok(Parsed::Render(options)) => options,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("render: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let v = options.view;
    let pixels = tracer::render_tile(&v);
    let mut ppm = format!("P6\n{} {}\n255\n", v.tile_width, v.tile_height).into_bytes();
    ppm.extend_from_slice(&pixels);
    if let Err(e) = fs::write(&options.out, &ppm) {
        eprintln!(
            "render: cannot write {}: {e}; pass --out with a path in a writable directory",
            options.out.display()
        );
        return ExitCode::from(1);
    }
    println!("tile {} {} {} {}", v.x0, v.y0, v.tile_width, v.tile_height);
    ExitCode::SUCCESS
}
