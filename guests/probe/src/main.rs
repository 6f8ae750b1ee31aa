//! `probe`: a diagnostic and deliberately hostile guest for the sandbox's tests.
//!
//! The first argument picks a mode (see [`USAGE`]). Exit codes: 0 success, 1 an unexpected
//! failure, 2 bad arguments, 3 an operation the sandbox denied, 4 an escape from the sandbox.

mod escape;
mod floats;
mod sys;

use std::ffi::OsString;
use std::fmt::Display;
use std::fs;
use std::hint::black_box;
use std::io::{self, BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: probe MODE [ARGS...]
modes:
  echo ARGS...        print ARGS joined by spaces
  env                 print every environment variable as K=V, sorted
  cat                 copy stdin to stdout
  read PATH           read a file: `ok BYTES` or `denied: ERROR` (exit 3)
  write PATH BYTES    create a file of BYTES pattern bytes: `ok` or `denied: ERROR` (exit 3)
  ls PATH             list a directory, sorted, or `denied: ERROR` (exit 3)
  copy-inputs         write each /input file reversed to /output: `copied N`
  sleep MS            sleep without using CPU: `slept MS`
  spin                loop forever
  alloc MIB           allocate and touch MIB mebibytes: `allocated MIB`
  stdout-flood        write lines to stdout forever
  stderr-flood        write lines to stderr forever
  output-flood        write 1 MiB chunks to /output/flood.bin forever
  files N             create /output/f0 .. /output/f{N-1}: `created N`
  recurse             recurse until the stack overflows
  exit CODE           exit with CODE
  panic               panic (a trap under panic=abort)
  clock               print `wall_ns N` and `monotonic_delta_ns N`
  random N            print N bytes from the WASI random source as hex (N <= 1048576)
  pi SAMPLES          Monte Carlo estimate of pi: `pi X.XXXXXX` (1 <= SAMPLES <= 100000000)
  escape              try to leave the sandbox: exit 0 if all denied, 4 if anything escaped
  floats              print the bits of NaN-producing float operations
  checkpoint-trap N   count in /checkpoint/count: save and exit with the job's checkpoint code
                      until the count is N, then write half of the next count there and trap";

const DENIED: u8 = 3;
const ESCAPED: u8 = 4;
const MIB: usize = 1 << 20;
const MAX_RANDOM_BYTES: u32 = 1 << 20;
const MAX_PI_SAMPLES: u64 = 100_000_000;
/// Points drawn per call for random bytes: few host calls, and a buffer of only 64 KiB.
const PI_BATCH: usize = 8 * 1024;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("probe: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs the mode named by `args[0]`; `Err` is a usage error.
fn run(args: &[OsString]) -> Result<ExitCode, String> {
    let Some(mode) = args.first() else {
        return Err("missing mode; pass one of the modes below".to_string());
    };
    let Some(mode) = mode.to_str() else {
        return Err(format!(
            "mode {mode:?} is not valid UTF-8; pass one of the modes below"
        ));
    };
    let rest = &args[1..];
    let code = match mode {
        "echo" => echo(rest),
        "env" => env(no_args(mode, rest)?),
        "cat" => cat(no_args(mode, rest)?),
        "read" => read(&path_arg(mode, rest)?),
        "write" => {
            let [path, bytes] = exact::<2>(mode, "PATH BYTES", rest)?;
            write(Path::new(path), number(mode, "BYTES", bytes)?)
        }
        "ls" => ls(&path_arg(mode, rest)?),
        "copy-inputs" => copy_inputs(no_args(mode, rest)?),
        "sleep" => sleep(number(mode, "MS", single(mode, "MS", rest)?)?),
        "spin" => spin(no_args(mode, rest)?),
        "alloc" => alloc(number(mode, "MIB", single(mode, "MIB", rest)?)?),
        "stdout-flood" => flood(no_args(mode, rest)?, io::stdout().lock(), "stdout"),
        "stderr-flood" => {
            no_args(mode, rest)?;
            println!("flooding stderr");
            flood((), io::stderr().lock(), "stderr")
        }
        "output-flood" => output_flood(no_args(mode, rest)?),
        "files" => files(number(mode, "N", single(mode, "N", rest)?)?),
        "recurse" => recurse_mode(no_args(mode, rest)?),
        "exit" => {
            let code: i32 = number(mode, "CODE", single(mode, "CODE", rest)?)?;
            println!("exiting {code}");
            std::process::exit(code)
        }
        "panic" => {
            no_args(mode, rest)?;
            println!("panicking");
            panic!("probe: panic requested by the panic mode")
        }
        "clock" => clock(no_args(mode, rest)?),
        "checkpoint-trap" => checkpoint_trap(number(mode, "N", single(mode, "N", rest)?)?),
        "random" => random(bounded(mode, "N", rest, 0..=MAX_RANDOM_BYTES)?),
        "pi" => pi(bounded(mode, "SAMPLES", rest, 1..=MAX_PI_SAMPLES)?),
        "escape" => {
            no_args(mode, rest)?;
            if escape::run() {
                ExitCode::from(ESCAPED)
            } else {
                ExitCode::SUCCESS
            }
        }
        "floats" => {
            no_args(mode, rest)?;
            floats::run();
            ExitCode::SUCCESS
        }
        other => {
            return Err(format!(
                "unknown mode {other:?}; pass one of the modes below"
            ));
        }
    };
    Ok(code)
}

/// Saves a count as its checkpoint up to `n`, then traps in the middle of writing the next.
fn checkpoint_trap(n: u64) -> ExitCode {
    let count: u64 = fs::read_to_string("/checkpoint/count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let Some(code) = std::env::var("CROWDCLOUD_CHECKPOINT_EXIT_CODE")
        .ok()
        .and_then(|code| code.parse::<i32>().ok())
    else {
        eprintln!("probe: this job does not checkpoint");
        return ExitCode::from(2);
    };
    println!("count {count}");
    if count < n {
        if let Err(error) = fs::write("/checkpoint/count", format!("{}\n", count + 1)) {
            eprintln!("probe: cannot write /checkpoint/count: {error}");
            return ExitCode::from(1);
        }
        std::process::exit(code)
    }
    // Half of the next count's digits, then a trap: this must never become a checkpoint.
    let _ = fs::write("/checkpoint/count", b"9");
    std::process::abort()
}

fn no_args(mode: &str, rest: &[OsString]) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("{mode} takes no arguments; remove {:?}", rest[0]))
    }
}

fn exact<'a, const N: usize>(
    mode: &str,
    what: &str,
    rest: &'a [OsString],
) -> Result<[&'a OsString; N], String> {
    if rest.len() != N {
        return Err(format!(
            "{mode} needs exactly {what} but got {} arguments; see the usage below",
            rest.len()
        ));
    }
    Ok(std::array::from_fn(|i| &rest[i]))
}

fn single<'a>(mode: &str, what: &str, rest: &'a [OsString]) -> Result<&'a OsString, String> {
    let [arg] = exact::<1>(mode, what, rest)?;
    Ok(arg)
}

fn path_arg(mode: &str, rest: &[OsString]) -> Result<PathBuf, String> {
    Ok(PathBuf::from(single(mode, "PATH", rest)?))
}

fn number<T: FromStr>(mode: &str, what: &str, arg: &OsString) -> Result<T, String> {
    arg.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{mode} needs a whole number for {what}, not {arg:?}"))
}

/// The single number argument of `mode`, refused outside `range` so that a slip of the finger
/// cannot ask for gigabytes of output or hours of work.
fn bounded<T>(
    mode: &str,
    what: &str,
    rest: &[OsString],
    range: RangeInclusive<T>,
) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    let n: T = number(mode, what, single(mode, what, rest)?)?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{mode} takes {what} from {} to {}, not {n}",
            range.start(),
            range.end()
        ))
    }
}

/// Prints a line to stdout and ignores a closed stdout: the exit code still tells the story.
fn emit(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

fn denied(e: impl std::fmt::Display) -> ExitCode {
    println!("denied: {e}");
    ExitCode::from(DENIED)
}

fn echo(rest: &[OsString]) -> ExitCode {
    let mut line = Vec::new();
    for (i, arg) in rest.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.extend_from_slice(arg.as_encoded_bytes());
    }
    line.push(b'\n');
    emit(&line);
    ExitCode::SUCCESS
}

fn env((): ()) -> ExitCode {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.sort();
    let mut text = Vec::new();
    for (k, v) in vars {
        text.extend_from_slice(k.as_encoded_bytes());
        text.push(b'=');
        text.extend_from_slice(v.as_encoded_bytes());
        text.push(b'\n');
    }
    emit(&text);
    ExitCode::SUCCESS
}

fn cat((): ()) -> ExitCode {
    match io::copy(&mut io::stdin().lock(), &mut io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: cat failed: {e}; check the task's stdin and stdout");
            ExitCode::from(1)
        }
    }
}

fn read(path: &Path) -> ExitCode {
    match fs::read(path) {
        Ok(bytes) => {
            println!("ok {}", bytes.len());
            ExitCode::SUCCESS
        }
        Err(e) => denied(e),
    }
}

/// Byte `i` of the `write` mode's content; 251 is prime, so the pattern never lines up with
/// power-of-two block sizes.
fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

fn write(path: &Path, bytes: u64) -> ExitCode {
    let result = fs::File::create(path).and_then(|file| {
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let mut chunk = Vec::with_capacity(64 * 1024);
        let mut written = 0u64;
        while written < bytes {
            let n = (bytes - written).min(64 * 1024);
            chunk.clear();
            chunk.extend((written..written + n).map(pattern_byte));
            out.write_all(&chunk)?;
            written += n;
        }
        out.flush()
    });
    match result {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => denied(e),
    }
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort();
    Ok(names)
}

fn ls(path: &Path) -> ExitCode {
    match sorted_entries(path) {
        Ok(names) => {
            let mut text = Vec::new();
            for name in names {
                text.extend_from_slice(name.as_encoded_bytes());
                text.push(b'\n');
            }
            emit(&text);
            ExitCode::SUCCESS
        }
        Err(e) => denied(e),
    }
}

fn copy_inputs((): ()) -> ExitCode {
    let result = (|| {
        let mut copied = 0u64;
        for name in sorted_entries(Path::new("/input"))? {
            let source = Path::new("/input").join(&name);
            if !fs::symlink_metadata(&source)?.is_file() {
                continue;
            }
            let mut bytes = fs::read(&source)?;
            bytes.reverse();
            fs::write(Path::new("/output").join(&name), bytes)?;
            copied += 1;
        }
        io::Result::Ok(copied)
    })();
    match result {
        Ok(n) => {
            println!("copied {n}");
            ExitCode::SUCCESS
        }
        Err(e) => denied(e),
    }
}

fn sleep(ms: u64) -> ExitCode {
    std::thread::sleep(Duration::from_millis(ms));
    println!("slept {ms}");
    ExitCode::SUCCESS
}

fn spin((): ()) -> ExitCode {
    println!("spinning");
    let mut x = 1u64;
    loop {
        x = black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
}

fn alloc(mib: u32) -> ExitCode {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mib {
        // A non-zero fill writes every byte, so the pages are really committed.
        blocks.push(black_box(vec![(i % 255) as u8 + 1; MIB]));
    }
    black_box(&blocks);
    println!("allocated {mib}");
    ExitCode::SUCCESS
}

fn flood(_: (), sink: impl Write, name: &str) -> ExitCode {
    let mut out = BufWriter::with_capacity(64 * 1024, sink);
    let mut i = 0u64;
    loop {
        if let Err(e) = writeln!(
            out,
            "flood line {i:>12} ........................................."
        ) {
            drop(out.into_parts());
            eprintln!("probe: {name} refused writes after {i} lines: {e}");
            return ExitCode::from(DENIED);
        }
        i += 1;
    }
}

fn output_flood((): ()) -> ExitCode {
    println!("flooding /output/flood.bin");
    let chunk = vec![0xa5u8; MIB];
    let mut written = 0u64;
    let result: io::Result<std::convert::Infallible> = fs::File::create("/output/flood.bin")
        .and_then(|mut file| {
            loop {
                file.write_all(&chunk)?;
                written += 1;
            }
        });
    let Err(e) = result;
    println!("denied: stopped after {written} MiB: {e}");
    ExitCode::from(DENIED)
}

fn files(n: u32) -> ExitCode {
    for i in 0..n {
        if let Err(e) = fs::write(format!("/output/f{i}"), format!("file {i}\n")) {
            return denied(format_args!("after {i} files: {e}"));
        }
    }
    println!("created {n}");
    ExitCode::SUCCESS
}

/// Non-tail recursion with a stack array, so neither the optimiser nor a tail call removes the
/// frames; it only stops when the stack runs out.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(black_box(frame)[(depth % 32) as usize])
}

fn recurse_mode((): ()) -> ExitCode {
    println!("recursing");
    let result = recurse(0);
    println!("returned {result}");
    ExitCode::SUCCESS
}

fn clock((): ()) -> ExitCode {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => println!("wall_ns {}", d.as_nanos()),
        Err(e) => println!("wall_ns -{}", e.duration().as_nanos()),
    }
    let a = Instant::now();
    let b = Instant::now();
    println!("monotonic_delta_ns {}", b.duration_since(a).as_nanos());
    ExitCode::SUCCESS
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn random(n: u32) -> ExitCode {
    let mut buf = vec![0u8; n as usize];
    match sys::random_fill(&mut buf) {
        Ok(()) => {
            println!("{}", hex(&buf));
            ExitCode::SUCCESS
        }
        Err(e) => denied(e),
    }
}

fn pi(samples: u64) -> ExitCode {
    match estimate_pi(samples, sys::random_fill) {
        Ok(estimate) => {
            println!("pi {estimate:.6}");
            ExitCode::SUCCESS
        }
        Err(e) => denied(e),
    }
}

/// Four times the share of random points in the unit square that fall in the quarter circle.
/// The randomness comes from the host, so every run gives a slightly different answer: the
/// example of results that agree only within a tolerance.
fn estimate_pi(samples: u64, mut fill: impl FnMut(&mut [u8]) -> io::Result<()>) -> io::Result<f64> {
    let mut buf = vec![0u8; PI_BATCH * 8];
    let mut left = samples;
    let mut inside = 0u64;
    while left > 0 {
        let points = usize::try_from(left).map_or(PI_BATCH, |n| n.min(PI_BATCH));
        let bytes = &mut buf[..points * 8];
        fill(bytes)?;
        for &[a, b, c, d, e, f, g, h] in bytes.as_chunks::<8>().0 {
            let (x, y) = (unit([a, b, c, d]), unit([e, f, g, h]));
            if x * x + y * y <= 1.0 {
                inside += 1;
            }
        }
        left -= points as u64;
    }
    Ok(4.0 * inside as f64 / samples as f64)
}

/// Four random bytes as the middle of one of 2^32 equal steps of (0, 1), so neither edge of
/// the square is counted more than the other.
fn unit(bytes: [u8; 4]) -> f64 {
    (f64::from(u32::from_le_bytes(bytes)) + 0.5) / 4_294_967_296.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn usage_errors_are_reported() {
        for bad in [
            "",
            "nope",
            "read",
            "read a b",
            "write x",
            "write x -1",
            "sleep soon",
            "env extra",
            "random 2000000",
            "pi",
            "pi 0",
            "pi 100000001",
            "pi many",
            "pi 10 20",
        ] {
            let err = run(&args(bad)).expect_err(bad);
            assert!(!err.ends_with('.'), "{err}");
            assert!(err.starts_with(|c: char| c.is_ascii_lowercase()), "{err}");
        }
    }

    #[test]
    fn pattern_repeats_every_251_bytes() {
        assert_eq!(pattern_byte(0), 0);
        assert_eq!(pattern_byte(250), 250);
        assert_eq!(pattern_byte(251), 0);
        assert_eq!(pattern_byte(u64::MAX), (u64::MAX % 251) as u8);
    }

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(hex(&[0x00, 0x7f, 0xab, 0xff]), "007fabff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn write_then_read_round_trips() {
        let path = std::env::temp_dir().join(format!("probe-test-{}", std::process::id()));
        assert_eq!(write(&path, 70_000), ExitCode::SUCCESS);
        let bytes = fs::read(&path).expect("read back the written file");
        fs::remove_file(&path).expect("remove the test file");
        assert_eq!(bytes.len(), 70_000);
        assert!(
            bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(i as u64))
        );
    }

    #[test]
    fn pi_estimate_counts_points_in_the_quarter_circle() {
        let zeros = |buf: &mut [u8]| {
            buf.fill(0);
            Ok(())
        };
        let ones = |buf: &mut [u8]| {
            buf.fill(0xff);
            Ok(())
        };
        assert_eq!(estimate_pi(3, zeros).expect("zeros"), 4.0);
        assert_eq!(estimate_pi(PI_BATCH as u64 + 1, ones).expect("ones"), 0.0);
        // A fixed xorshift stands in for the host's randomness, which native builds lack.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let xorshift = |buf: &mut [u8]| {
            for byte in buf {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = (state >> 56) as u8;
            }
            Ok(())
        };
        let estimate = estimate_pi(200_000, xorshift).expect("xorshift");
        assert!((estimate - std::f64::consts::PI).abs() < 0.02, "{estimate}");
        let failing = |_: &mut [u8]| Err(io::Error::other("no randomness"));
        assert!(estimate_pi(1, failing).is_err());
    }

    #[test]
    fn random_is_zeros_natively() {
        let mut buf = [1u8; 8];
        sys::random_fill(&mut buf).expect("native fill cannot fail");
        if cfg!(not(target_arch = "wasm32")) {
            assert_eq!(buf, [0; 8]);
        }
    }
}
