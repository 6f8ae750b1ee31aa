//! The `escape` mode: tries known ways out of a WASI sandbox and reports each one.

use std::fs;
use std::io;
use std::path::Path;

use crate::sys;

/// What one attempt achieved: `Err` is a refusal (good), `Ok` describes what leaked.
type Outcome = Result<String, String>;
type Attempt = (&'static str, fn() -> Outcome);

/// Names a host's root has and a sandbox's never should.
const HOST_ROOT_NAMES: [&str; 10] = [
    "bin", "boot", "dev", "etc", "home", "proc", "root", "sys", "usr", "var",
];

/// Runs every attempt, prints `NAME: denied: ...` or `NAME: ESCAPED ...` for each, and returns
/// whether anything escaped.
pub fn run() -> bool {
    let attempts: [Attempt; 7] = [
        ("etc-passwd", || read("/etc/passwd")),
        ("output-dotdot", output_dotdot),
        ("input-dotdot", || read("/input/../../etc/passwd")),
        ("list-root", list_root),
        ("symlink", || through_symlink("/etc/passwd", "/output/link")),
        ("symlink-dotdot", || {
            through_symlink("../../../../../../../../etc/passwd", "/output/link-dotdot")
        }),
        ("proc-environ", || read("/proc/self/environ")),
    ];
    let mut escaped = false;
    for (name, attempt) in attempts {
        match attempt() {
            Ok(leak) => {
                escaped = true;
                println!("{name}: ESCAPED {leak}");
            }
            Err(why) => println!("{name}: denied: {why}"),
        }
    }
    escaped
}

fn read(path: &str) -> Outcome {
    match fs::read(path) {
        Ok(bytes) => Ok(format!("read {} bytes of {path}", bytes.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// `../../etc/passwd` relative to `/output`: through a changed working directory when the
/// runtime supports one, else spelled out from the preopen.
fn output_dotdot() -> Outcome {
    let path = if std::env::set_current_dir("/output").is_ok() {
        "../../etc/passwd"
    } else {
        "/output/../../etc/passwd"
    };
    let outcome = read(path);
    let _ = std::env::set_current_dir("/");
    outcome
}

fn list_root() -> Outcome {
    let names = match list(Path::new("/")) {
        Ok(names) => names,
        Err(e) => return Err(e.to_string()),
    };
    // A runtime may legitimately mount the task's own directories at `/`; only host names leak.
    if names.iter().any(|n| HOST_ROOT_NAMES.contains(&n.as_str())) {
        Ok(format!("listed / as: {}", names.join(" ")))
    } else {
        Err(format!("/ shows only the sandbox: [{}]", names.join(" ")))
    }
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn through_symlink(target: &str, link: &str) -> Outcome {
    let _ = fs::remove_file(link);
    if let Err(e) = sys::symlink_to(Path::new(target), Path::new(link)) {
        return Err(format!("cannot create {link} -> {target}: {e}"));
    }
    let outcome = match fs::read(link) {
        Ok(bytes) => Ok(format!(
            "read {} bytes of {target} through {link}",
            bytes.len()
        )),
        Err(e) => Err(format!(
            "created {link} -> {target} but reading it failed: {e}"
        )),
    };
    let _ = fs::remove_file(link);
    outcome
}
