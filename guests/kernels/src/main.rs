//! `kernels NAME [SIZE]`: runs one of the CPU-bound kernels of the `kernels` crate and prints
//! `NAME SIZE CHECKSUM`, so `crowdcloud bench sandbox` can compare this WebAssembly build with
//! the same code compiled natively. Exit code 2 with usage on stderr for bad arguments.

use std::process::ExitCode;

use kernels::Kernel;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(kernel) = args.first().and_then(|name| Kernel::from_name(name)) else {
        eprintln!("usage: kernels mandelbrot|sha256|nbody [SIZE]");
        return ExitCode::from(2);
    };
    let size = match args.get(1).map(|size| size.parse::<u32>()) {
        None => kernel.default_size(),
        Some(Ok(size)) => size,
        Some(Err(_)) => {
            eprintln!("kernels: SIZE must be a whole number; usage: kernels NAME [SIZE]");
            return ExitCode::from(2);
        }
    };
    println!("{} {size} {}", kernel.name(), kernel.run(size));
    ExitCode::SUCCESS
}
