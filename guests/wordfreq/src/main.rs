//! `wordfreq`: the map/shuffle/reduce example, word frequencies in two stages (or one).
//!
//! - `wordfreq map PARTS` counts the words of every regular file in `/input` (sorted by name), or
//!   of stdin when `/input` is absent or holds none, and writes `/output/part-0` to
//!   `/output/part-{PARTS-1}`, every one even if empty; each word goes to part
//!   `fnv1a_64(word) % PARTS`, so every mapper sends a word to the same reducer. PARTS is 1 to
//!   10000.
//! - `wordfreq reduce` sums the `word<TAB>count` lines of every regular file in `/input` (any
//!   names, e.g. part i of every mapper) into `/output/counts.txt`, and prints
//!   `words N distinct M` (N words in all, M different ones).
//! - `wordfreq count` does both in one stage: it reads like `map` and writes and prints like
//!   `reduce`, the reference the two stages must agree with.
//!
//! Every output holds `word<TAB>count\n` lines sorted by word in byte order. What a word is, is
//! set out in `words.rs`. Exit codes: 0 success, 1 an input could not be read, was malformed, or
//! an output could not be written, 2 bad arguments.

mod words;

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use words::{Counts, ReduceError};

const INPUT_DIR: &str = "/input";
const OUTPUT_DIR: &str = "/output";
/// The most parts `map` writes: each is a file, and ten thousand is already far more reducers
/// than a pool runs at once.
const MAX_PARTS: usize = 10_000;

const USAGE: &str = "usage: wordfreq map PARTS | wordfreq reduce | wordfreq count
  map PARTS  count the words of the files in /input (or stdin) into /output/part-0 to
             /output/part-{PARTS-1}, PARTS from 1 to 10000
  reduce     sum the word<TAB>count lines of the files in /input into /output/counts.txt
  count      count the words of the files in /input (or stdin) into /output/counts.txt";

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Map(usize),
    Reduce,
    Count,
    Help,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(mode) = parse_args(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match mode {
        Mode::Map(parts) => map(parts),
        Mode::Reduce => reduce(),
        Mode::Count => count(),
        Mode::Help => {
            println!("{USAGE}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wordfreq: {message}");
            ExitCode::from(1)
        }
    }
}

/// The mode the arguments ask for, or `None` if they are not a valid command line.
fn parse_args(args: &[OsString]) -> Option<Mode> {
    let args: Vec<&str> = args.iter().map(|arg| arg.to_str()).collect::<Option<_>>()?;
    match args[..] {
        ["map", parts] => parts
            .parse()
            .ok()
            .filter(|parts| (1..=MAX_PARTS).contains(parts))
            .map(Mode::Map),
        ["reduce"] => Some(Mode::Reduce),
        ["count"] => Some(Mode::Count),
        ["-h" | "--help" | "help"] => Some(Mode::Help),
        _ => None,
    }
}

fn map(parts: usize) -> Result<(), String> {
    let counts = count_inputs()?;
    for (i, text) in words::partitions(&counts, parts).iter().enumerate() {
        write_output(&format!("part-{i}"), text)?;
    }
    Ok(())
}

fn count() -> Result<(), String> {
    let counts = count_inputs()?;
    finish(&counts)
}

fn reduce() -> Result<(), String> {
    let mut counts = Counts::new();
    for path in input_files()? {
        let read = File::open(&path)
            .map_err(ReduceError::Io)
            .and_then(|file| words::add_counts_reader(&mut counts, BufReader::new(file)));
        match read {
            Ok(()) => {}
            Err(ReduceError::Io(e)) => {
                return Err(format!(
                    "cannot read {}: {e}; check that the input is readable",
                    path.display()
                ));
            }
            Err(ReduceError::Line(line, why)) => {
                return Err(format!(
                    "{} line {line} {why}; reduce takes only the word<TAB>count lines that \
                     `wordfreq map` writes",
                    path.display()
                ));
            }
        }
    }
    finish(&counts)
}

/// Writes the final counts to `/output/counts.txt`, then prints the totals.
fn finish(counts: &Counts) -> Result<(), String> {
    write_output("counts.txt", &words::render(counts))?;
    let (words, distinct) = words::totals(counts);
    println!("words {words} distinct {distinct}");
    Ok(())
}

/// The word counts of the files in `/input`, or of stdin when there are none.
fn count_inputs() -> Result<Counts, String> {
    let files = input_files()?;
    let mut counts = Counts::new();
    if files.is_empty() {
        words::count_reader(&mut counts, io::stdin().lock()).map_err(|e| {
            format!("cannot read stdin: {e}; pass the text as files in {INPUT_DIR} instead")
        })?;
    }
    for path in files {
        File::open(&path)
            .and_then(|file| words::count_reader(&mut counts, BufReader::new(file)))
            .map_err(|e| {
                format!(
                    "cannot read {}: {e}; check that the input is readable",
                    path.display()
                )
            })?;
    }
    Ok(counts)
}

fn input_files() -> Result<Vec<PathBuf>, String> {
    regular_files(Path::new(INPUT_DIR)).map_err(|e| {
        format!("cannot list {INPUT_DIR}: {e}; give the task a readable {INPUT_DIR}, or none")
    })
}

fn write_output(name: &str, text: &str) -> Result<(), String> {
    let path = Path::new(OUTPUT_DIR).join(name);
    fs::write(&path, text).map_err(|e| {
        format!(
            "cannot write {}: {e}; give the task a writable {OUTPUT_DIR}",
            path.display()
        )
    })
}

/// Regular files directly inside `dir`, sorted by name; a missing `dir` has none. The order
/// makes runs repeatable: the first unreadable or malformed file is always the one reported.
fn regular_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((entry.file_name(), entry.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Option<Mode> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse_args(&args)
    }

    #[test]
    fn arguments_name_a_mode() {
        assert_eq!(parse(&["map", "1"]), Some(Mode::Map(1)));
        assert_eq!(parse(&["map", "10000"]), Some(Mode::Map(10_000)));
        assert_eq!(parse(&["reduce"]), Some(Mode::Reduce));
        assert_eq!(parse(&["count"]), Some(Mode::Count));
        assert_eq!(parse(&["--help"]), Some(Mode::Help));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &[][..],
            &["map"],
            &["map", "0"],
            &["map", "10001"],
            &["map", "-1"],
            &["map", "two"],
            &["map", "2", "3"],
            &["reduce", "2"],
            &["count", "x"],
            &["shuffle"],
            &["MAP", "2"],
        ] {
            assert_eq!(parse(args), None, "{args:?}");
        }
    }

    #[test]
    fn lists_only_regular_files_sorted() {
        let dir = std::env::temp_dir().join(format!("wordfreq-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).expect("create test dir");
        for name in ["b.txt", "a.txt", "C.txt"] {
            fs::write(dir.join(name), name).expect("write test file");
        }
        let files = regular_files(&dir).expect("list test dir");
        fs::remove_dir_all(&dir).expect("remove test dir");
        let names: Vec<&str> = files
            .iter()
            .map(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .expect("utf-8 name")
            })
            .collect();
        assert_eq!(names, ["C.txt", "a.txt", "b.txt"]);
        let missing = regular_files(Path::new("/definitely/not/here")).expect("missing is empty");
        assert!(missing.is_empty());
    }
}
