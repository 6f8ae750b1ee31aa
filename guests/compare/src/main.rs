//! `compare`: a validator guest that decides whether two results of the same task are
//! equivalent, for jobs whose results are not bit-identical across machines (Monte Carlo,
//! floating point on different hardware).
//!
//! The host mounts the two results read-only at `/a` and `/b`, each holding `outcome` (one line
//! such as `succeeded` or `exit 3`), `stdout`, `stderr` and a directory `output/`. They are
//! equivalent when the outcomes are equal, stdout (and stderr unless `--ignore-stderr`) are
//! equivalent texts, and the two `output/` trees hold the same file paths with equivalent files;
//! [`text`] says when texts are equivalent. Exit codes: 0 equivalent, 1 different (one line on
//! stdout says the first difference), 2 bad usage or results that cannot be read (stderr says
//! why).

mod text;
mod tree;

#[cfg(test)]
mod testdir;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use text::Tolerance;

const USAGE: &str = "usage: compare [--relative R] [--absolute A] [--ignore-stderr]
compares the task results mounted read-only at /a and /b, each holding
`outcome`, `stdout`, `stderr` and a directory `output/`
  --relative R     numbers may differ by R times the larger one (default 1e-9)
  --absolute A     numbers may differ by A whatever their size (default 0)
  --ignore-stderr  do not compare stderr
exit codes: 0 equivalent, 1 different, 2 bad usage or unreadable results";

const DIFFERENT: u8 = 1;
const CANNOT_JUDGE: u8 = 2;

#[derive(Debug, PartialEq)]
struct Options {
    tolerance: Tolerance,
    ignore_stderr: bool,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            complain(&format!("{message}\n{USAGE}"));
            return ExitCode::from(CANNOT_JUDGE);
        }
    };
    match compare_results(Path::new("/a"), Path::new("/b"), &options) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(difference)) => {
            // A closed stdout must not turn a verdict into a panic; the exit code still tells.
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{difference}").and_then(|()| out.flush());
            ExitCode::from(DIFFERENT)
        }
        Err(message) => {
            complain(&message);
            ExitCode::from(CANNOT_JUDGE)
        }
    }
}

/// Writes to stderr without `eprintln!`, which panics when stderr is closed.
fn complain(message: &str) {
    let _ = writeln!(io::stderr().lock(), "compare: {message}");
}

fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut relative = None;
    let mut absolute = None;
    let mut ignore_stderr = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.to_str() else {
            return Err(format!(
                "argument {arg:?} is not valid UTF-8; see the usage below"
            ));
        };
        match flag {
            "--relative" => relative = Some(number(flag, relative, rest.next())?),
            "--absolute" => absolute = Some(number(flag, absolute, rest.next())?),
            "--ignore-stderr" if ignore_stderr => {
                return Err("--ignore-stderr is given twice; pass it once".to_string());
            }
            "--ignore-stderr" => ignore_stderr = true,
            other => {
                return Err(format!("unknown argument {other:?}; see the usage below"));
            }
        }
    }
    Ok(Options {
        tolerance: Tolerance {
            relative: relative.unwrap_or(1e-9),
            absolute: absolute.unwrap_or(0.0),
        },
        ignore_stderr,
    })
}

/// The value after `flag`; a repeated flag is refused because which one wins would be a guess.
fn number(flag: &str, earlier: Option<f64>, value: Option<&OsString>) -> Result<f64, String> {
    if earlier.is_some() {
        return Err(format!("{flag} is given twice; pass it once"));
    }
    let Some(value) = value else {
        return Err(format!("{flag} needs a number after it"));
    };
    value
        .to_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("{flag} needs a finite number of at least 0, not {value:?}"))
}

/// Compares the results at `a` and `b`: `Ok(None)` if equivalent, `Ok(Some(why))` if not, and
/// `Err` if either cannot be read.
fn compare_results(a: &Path, b: &Path, options: &Options) -> Result<Option<String>, String> {
    let mut streams = vec!["stdout"];
    if !options.ignore_stderr {
        streams.push("stderr");
    }
    // Checking the layout of both first means a broken result is always refused, never judged
    // different because of some earlier difference.
    for root in [a, b] {
        check_layout(root, &streams)?;
    }
    let outcome_a = tree::read_bounded(&a.join("outcome"))?;
    let outcome_b = tree::read_bounded(&b.join("outcome"))?;
    // Only the line matters, not whether the host ended it with a newline.
    let (x, y) = (outcome_a.trim_ascii(), outcome_b.trim_ascii());
    if x != y {
        return Ok(Some(format!(
            "outcome: {} in /a and {} in /b",
            text::shown(&String::from_utf8_lossy(x)),
            text::shown(&String::from_utf8_lossy(y))
        )));
    }
    for stream in streams {
        let x = tree::read_bounded(&a.join(stream))?;
        let y = tree::read_bounded(&b.join(stream))?;
        if let Some(difference) = text::compare(&x, &y, options.tolerance) {
            return Ok(Some(format!("{stream} {difference}")));
        }
    }
    tree::compare_trees(&a.join("output"), &b.join("output"), options.tolerance)
}

fn check_layout(root: &Path, streams: &[&str]) -> Result<(), String> {
    let is_dir = |path: &Path| std::fs::metadata(path).map(|m| m.is_dir());
    match is_dir(root) {
        Ok(true) => {}
        Ok(false) => return Err(format!("{} is not a directory", root.display())),
        Err(e) => {
            return Err(format!(
                "cannot read {}: {e}; the host must mount each result read-only at /a and /b",
                root.display()
            ));
        }
    }
    for name in std::iter::once(&"outcome").chain(streams) {
        let path = root.join(name);
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(format!("{} is missing or not a file", path.display()));
        }
    }
    let output = root.join("output");
    if !is_dir(&output).unwrap_or(false) {
        return Err(format!(
            "{} is missing or not a directory",
            output.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use testdir::TestDir;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn result(name: &str, outcome: &str, stdout: &str, stderr: &str) -> TestDir {
        let dir = TestDir::new(name);
        dir.write("outcome", outcome.as_bytes());
        dir.write("stdout", stdout.as_bytes());
        dir.write("stderr", stderr.as_bytes());
        dir.mkdir("output");
        dir
    }

    fn judge(a: &TestDir, b: &TestDir, argv: &str) -> Result<Option<String>, String> {
        let options = parse(&args(argv)).expect("valid arguments");
        compare_results(a.path(), b.path(), &options)
    }

    #[test]
    fn arguments_set_the_tolerance() {
        let defaults = parse(&[]).expect("no arguments");
        assert_eq!(defaults.tolerance.relative, 1e-9);
        assert_eq!(defaults.tolerance.absolute, 0.0);
        assert!(!defaults.ignore_stderr);
        let set = parse(&args("--absolute 0.5 --ignore-stderr --relative 1e-3")).expect("valid");
        let tolerance = Tolerance {
            relative: 1e-3,
            absolute: 0.5,
        };
        assert_eq!(
            set,
            Options {
                tolerance,
                ignore_stderr: true
            }
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            "--relative",
            "--relative x",
            "--relative -1",
            "--relative inf",
            "--absolute NaN",
            "--relative 1 --relative 2",
            "--ignore-stderr --ignore-stderr",
            "--help",
            "extra",
        ] {
            let err = parse(&args(bad)).expect_err(bad);
            assert!(err.starts_with(|c: char| c.is_ascii_lowercase() || c == '-'));
        }
    }

    #[test]
    fn equal_results_are_equivalent() {
        let a = result("same-a", "succeeded\n", "pi 3.141593\n", "");
        let b = result("same-b", "succeeded", "pi  3.141593", "");
        a.write("output/sub/data.txt", b"1 2 3");
        b.write("output/sub/data.txt", b"1\n2\n3\n");
        assert_eq!(judge(&a, &b, ""), Ok(None));
    }

    #[test]
    fn the_first_difference_is_reported() {
        let a = result("diff-a", "exit 3", "pi 3.1402", "warn");
        let b = result("diff-b", "succeeded", "pi 3.1711", "note");
        assert_eq!(
            judge(&a, &b, ""),
            Ok(Some(
                "outcome: exit 3 in /a and succeeded in /b".to_string()
            ))
        );
        b.write("outcome", b"exit 3\n");
        assert_eq!(
            judge(&a, &b, ""),
            Ok(Some(
                "stdout token 2: 3.1402 and 3.1711 differ by more than the tolerance".to_string()
            ))
        );
        assert_eq!(
            judge(&a, &b, "--relative 0.01"),
            Ok(Some("stderr token 1: warn and note differ".to_string()))
        );
        assert_eq!(judge(&a, &b, "--relative 0.01 --ignore-stderr"), Ok(None));
        b.write("output/x", b"");
        assert_eq!(
            judge(&a, &b, "--absolute 0.1 --ignore-stderr"),
            Ok(Some("output/x is only in /b".to_string()))
        );
    }

    #[test]
    fn broken_results_cannot_be_judged() {
        let a = result("broken-a", "succeeded", "", "");
        let b = result("broken-b", "succeeded", "", "");
        assert_eq!(judge(&a, &b, ""), Ok(None));
        let missing = a.path().join("nowhere");
        let err = compare_results(&missing, b.path(), &parse(&[]).expect("defaults"))
            .expect_err("missing /a");
        assert!(err.contains("cannot read"), "{err}");
        std::fs::remove_file(b.path().join("stderr")).expect("remove stderr");
        let err = judge(&a, &b, "").expect_err("no stderr");
        assert!(err.contains("stderr is missing"), "{err}");
        assert_eq!(judge(&a, &b, "--ignore-stderr"), Ok(None));
        std::fs::remove_dir(a.path().join("output")).expect("remove output");
        let err = judge(&a, &b, "--ignore-stderr").expect_err("no output");
        assert!(err.contains("output is missing"), "{err}");
    }
}
