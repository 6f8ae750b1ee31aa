//! `wordcount`: a `wc`-like guest that counts every regular file in `/input`, or stdin if there
//! are none, and also writes the report to `/output/counts.txt` when `/output` exists.
//!
//! Exit codes: 0 on success, 1 if an input could not be read or the report could not be saved.

mod count;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use count::{Counts, count_reader};

const INPUT_DIR: &str = "/input";
const OUTPUT_DIR: &str = "/output";

fn main() -> ExitCode {
    let mut ok = true;
    let inputs = match regular_files(Path::new(INPUT_DIR)) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("wordcount: cannot list {INPUT_DIR}: {e}; counting stdin instead");
            ok = false;
            Vec::new()
        }
    };

    let mut report = String::new();
    if inputs.is_empty() {
        match count_reader(io::stdin().lock()) {
            Ok(c) => push_line(&mut report, c, "-"),
            Err(e) => {
                eprintln!("wordcount: cannot read stdin: {e}; pass input as files in {INPUT_DIR}");
                return ExitCode::from(1);
            }
        }
    } else {
        let mut total = Counts::default();
        for (name, path) in &inputs {
            match File::open(path).and_then(count_reader) {
                Ok(c) => {
                    total.add(c);
                    push_line(&mut report, c, &name.to_string_lossy());
                }
                Err(e) => {
                    eprintln!(
                        "wordcount: cannot read {}: {e}; check that the input is readable",
                        path.display()
                    );
                    ok = false;
                }
            }
        }
        push_line(&mut report, total, "total");
    }

    print!("{report}");
    if Path::new(OUTPUT_DIR).is_dir() {
        let target = Path::new(OUTPUT_DIR).join("counts.txt");
        if let Err(e) = fs::write(&target, &report) {
            eprintln!(
                "wordcount: cannot write {}: {e}; give the task a writable {OUTPUT_DIR}",
                target.display()
            );
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn push_line(report: &mut String, c: Counts, name: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(report, "{} {} {} {name}", c.lines, c.words, c.bytes);
}

/// Regular files directly inside `dir`, sorted by name; a missing `dir` has none.
fn regular_files(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
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
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_regular_files_sorted() {
        let dir = std::env::temp_dir().join(format!("wordcount-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).expect("create test dir");
        for name in ["b.txt", "a.txt", "C.txt"] {
            fs::write(dir.join(name), name).expect("write test file");
        }
        let names: Vec<OsString> = regular_files(&dir)
            .expect("list test dir")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        fs::remove_dir_all(&dir).expect("remove test dir");
        assert_eq!(names, ["C.txt", "a.txt", "b.txt"]);
    }

    #[test]
    fn missing_directory_has_no_files() {
        let files = regular_files(Path::new("/definitely/not/here")).expect("missing is empty");
        assert!(files.is_empty());
    }

    #[test]
    fn report_lines_are_space_separated() {
        let mut s = String::new();
        push_line(
            &mut s,
            Counts {
                lines: 1,
                words: 2,
                bytes: 3,
            },
            "x y",
        );
        assert_eq!(s, "1 2 3 x y\n");
    }
}
