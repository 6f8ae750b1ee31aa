//! WASI 0.2 components in the sandbox: the probe guest made a `wasi:cli/command` component
//! sees what it sees as a module, and is held by the same limits: deadline and cancellation
//! while it sleeps, pauses, virtual time, the disk cap, links and paths out of its preopens.
//! Components that import what nodes do not give are refused, naming the import.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sandbox::{
    Attempt, AttemptLimits, Determinism, Outcome, Prepared, RunReport, Sandbox, SandboxConfig,
};

fn limits() -> AttemptLimits {
    AttemptLimits {
        memory_bytes_max: 64 << 20,
        fuel_max: 5_000_000_000,
        deadline: Duration::from_secs(20),
        output_bytes_max: 4 << 20,
        output_files_max: 50,
        stdout_bytes_max: 1 << 20,
        stderr_bytes_max: 1 << 20,
    }
}

struct Bench {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    next: AtomicU32,
}

impl Bench {
    fn new() -> Self {
        Self::with(SandboxConfig::default())
    }

    fn with(config: SandboxConfig) -> Self {
        Self {
            sandbox: Sandbox::new(config).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            next: AtomicU32::new(0),
        }
    }

    fn prepare(&self, deterministic: bool) -> Prepared {
        let wasm = guests::PROBE_COMPONENT;
        self.sandbox
            .prepare(*blake3::hash(wasm).as_bytes(), wasm, deterministic)
            .unwrap_or_else(|reason| panic!("the component was refused: {reason}"))
    }

    fn attempt(&self, args: &[&str]) -> Attempt {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        Attempt::plain(
            self.dir.path().join(format!("attempt-{index}")),
            "probe",
            args.iter().map(|arg| (*arg).to_owned()).collect(),
            limits(),
        )
    }

    fn probe(&self, args: &[&str]) -> RunReport {
        self.sandbox.run(&self.prepare(false), self.attempt(args))
    }

    fn refused(&self, wat: &str) -> String {
        let wasm = wat::parse_str(wat).unwrap();
        match self
            .sandbox
            .prepare(*blake3::hash(&wasm).as_bytes(), &wasm, false)
        {
            Ok(_) => panic!("the component was prepared, but it should have been refused"),
            Err(reason) => reason,
        }
    }
}

/// How the probe component ends when it exits with any code but 0: the preview 1 adapter
/// reports a failure through `wasi:cli/exit.exit`, which carries no number, and that is 1.
const FAILED: Outcome = Outcome::ExitCode(1);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn host_file(bench: &Bench, name: &str, contents: &[u8]) -> PathBuf {
    let path = bench.dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn a_component_sees_its_args_env_stdin_and_inputs_and_exits_with_its_code() {
    let bench = Bench::new();
    let prepared = bench.prepare(false);
    let echo = bench.probe(&["echo", "a b", "c"]);
    assert_eq!(echo.outcome, Outcome::Succeeded, "{}", text(&echo.stderr));
    assert_eq!(text(&echo.stdout), "a b c\n");
    assert!(echo.usage.fuel_used > 0, "fuel is counted");

    let mut env = bench.attempt(&["env"]);
    env.env = vec![("GREETING".into(), "hello".into())];
    let env = bench.sandbox.run(&prepared, env);
    assert_eq!(
        text(&env.stdout),
        "GREETING=hello\n",
        "only the declared env"
    );

    let mut cat = bench.attempt(&["cat"]);
    cat.stdin = b"from stdin".to_vec();
    assert_eq!(
        text(&bench.sandbox.run(&prepared, cat).stdout),
        "from stdin"
    );

    let input = host_file(&bench, "source.txt", b"abc");
    let mut copy = bench.attempt(&["copy-inputs"]);
    copy.inputs = vec![("data.txt".into(), input.clone())];
    let copied = bench.sandbox.run(&prepared, copy);
    assert_eq!(
        copied.outcome,
        Outcome::Succeeded,
        "{}",
        text(&copied.stderr)
    );
    assert_eq!(copied.outputs.files[0].path, "data.txt");
    assert_eq!(
        std::fs::read(&copied.outputs.files[0].host_path).unwrap(),
        b"cba"
    );

    let mut write_input = bench.attempt(&["write", "/input/data.txt", "10"]);
    write_input.inputs = vec![("data.txt".into(), input.clone())];
    let denied = bench.sandbox.run(&prepared, write_input);
    assert_eq!(denied.outcome, FAILED, "/input is read-only");
    assert!(
        text(&denied.stdout).starts_with("denied"),
        "{}",
        text(&denied.stdout)
    );
    assert_eq!(std::fs::read(&input).unwrap(), b"abc");

    let exit = bench.probe(&["exit", "20"]);
    assert_eq!(exit.outcome, FAILED, "{}", text(&exit.stdout));
    assert_eq!(text(&exit.stdout), "exiting 20\n");
}

#[test]
fn a_component_in_deterministic_mode_repeats_exactly_and_sleeps_in_virtual_time() {
    let bench = Bench::new();
    let prepared = bench.prepare(true);
    let run = |args: &[&str], seed: u64| {
        let mut attempt = bench.attempt(args);
        attempt.determinism = Determinism::Seeded(seed);
        let report = bench.sandbox.run(&prepared, attempt);
        assert_eq!(report.outcome, Outcome::Succeeded, "{args:?}");
        (report.stdout, report.usage.fuel_used)
    };
    for args in [&["random", "32"][..], &["clock"], &["floats"]] {
        assert_eq!(run(args, 5), run(args, 5), "{args:?}");
    }
    assert_ne!(run(&["random", "32"], 5).0, run(&["random", "32"], 6).0);
    let mut sleeper = bench.attempt(&["sleep", "3600000"]);
    sleeper.determinism = Determinism::Seeded(1);
    sleeper.limits.deadline = Duration::from_secs(5);
    let slept = bench.sandbox.run(&prepared, sleeper);
    assert_eq!(slept.outcome, Outcome::Succeeded, "an hour of virtual time");
    assert_eq!(text(&slept.stdout), "slept 3600000\n");
}

#[test]
fn a_sleeping_component_is_stopped_by_its_deadline_and_by_cancellation() {
    let bench = Bench::new();
    let prepared = bench.prepare(false);
    let mut sleeper = bench.attempt(&["sleep", "600000"]);
    sleeper.limits.deadline = Duration::from_millis(300);
    let started = Instant::now();
    let report = bench.sandbox.run(&prepared, sleeper);
    assert_eq!(report.outcome, Outcome::DeadlineExceeded);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a ten-minute sleep ends at the deadline, not when it is over"
    );

    let sleeper = bench.attempt(&["sleep", "600000"]);
    let control = Arc::clone(&sleeper.control);
    let report = std::thread::scope(|scope| {
        let running = scope.spawn(|| bench.sandbox.run(&prepared, sleeper));
        // Cancelling before the guest sleeps is as good: it is stopped either way.
        control.cancel();
        running.join().unwrap()
    });
    assert_eq!(report.outcome, Outcome::Cancelled);
}

#[test]
fn a_paused_component_holds_until_resumed_and_then_finishes() {
    let bench = Bench::new();
    let prepared = bench.prepare(false);
    let sleeper = bench.attempt(&["sleep", "50"]);
    let output = sleeper.work_dir.join("output");
    let control = Arc::clone(&sleeper.control);
    control.pause();
    let held = Duration::from_millis(300);
    let report = std::thread::scope(|scope| {
        let running = scope.spawn(|| bench.sandbox.run(&prepared, sleeper));
        let give_up = Instant::now() + Duration::from_secs(10);
        while !output.exists() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(2));
        }
        // The pause itself, as long as the owner's policy might hold it.
        std::thread::sleep(held);
        control.resume();
        running.join().unwrap()
    });
    assert_eq!(
        report.outcome,
        Outcome::Succeeded,
        "{}",
        text(&report.stderr)
    );
    assert_eq!(text(&report.stdout), "slept 50\n");
    assert!(
        report.usage.wall >= held,
        "a 50 ms sleep took {:?}: the pause did not hold it",
        report.usage.wall
    );
}

#[test]
fn a_component_is_held_to_its_disk_cap_as_it_writes() {
    let bench = Bench::new();
    let flood = bench.probe(&["output-flood"]);
    assert_eq!(flood.outcome, Outcome::OutputTooLarge("/output".into()));
    // All at once to /scratch, ending before any periodic check could run: the write that
    // would cross the cap stops the guest before it lands, as the file left behind shows
    // (the attempt's directory stays until its report is dropped).
    let burst_bytes = limits().output_bytes_max + (2 << 20);
    let attempt = bench.attempt(&["write", "/scratch/burst", &burst_bytes.to_string()]);
    let landed = attempt.work_dir.join("scratch/burst");
    let burst = bench.sandbox.run(&bench.prepare(false), attempt);
    assert_eq!(burst.outcome, Outcome::OutputTooLarge("/output".into()));
    let landed_bytes = std::fs::metadata(&landed).map_or(0, |m| m.len());
    assert!(
        landed_bytes <= limits().output_bytes_max,
        "{landed_bytes} bytes landed on the provider's disk"
    );
    drop(burst);
    assert!(
        !landed.exists(),
        "the attempt's directory goes with its report"
    );
    // Under the cap, writing works.
    let fits = bench.probe(&["write", "/output/fits", "1048576"]);
    assert_eq!(fits.outcome, Outcome::Succeeded, "{}", text(&fits.stdout));
    assert_eq!(fits.outputs.files[0].size_bytes, 1 << 20);
}

#[test]
fn a_component_reaches_no_host_file_and_makes_no_link() {
    let bench = Bench::new();
    let secret = host_file(&bench, "secret.txt", b"the owner's");
    for path in [
        "/etc/passwd",
        secret.to_str().unwrap(),
        "/input/../../etc/passwd",
    ] {
        let read = bench.probe(&["read", path]);
        assert_eq!(read.outcome, FAILED, "{path}");
        assert!(text(&read.stdout).starts_with("denied"), "{path}");
    }
    let escape = bench.probe(&["escape"]);
    assert_eq!(
        escape.outcome,
        Outcome::Succeeded,
        "{}",
        text(&escape.stdout)
    );
    assert!(
        !text(&escape.stdout).contains("ESCAPED"),
        "{}",
        text(&escape.stdout)
    );
}

#[test]
fn a_restarted_sandbox_loads_the_component_it_compiled_from_disk() {
    let compiled = tempfile::tempdir().unwrap();
    let config = || SandboxConfig {
        compiled_dir: Some(compiled.path().to_owned()),
        ..SandboxConfig::default()
    };
    let first = Bench::with(config());
    assert!(!first.prepare(false).from_disk());
    drop(first);
    let restarted = Bench::with(config());
    let prepared = restarted.prepare(false);
    assert!(prepared.from_disk(), "the component's code came from disk");
    let echo = restarted
        .sandbox
        .run(&prepared, restarted.attempt(&["echo", "again"]));
    assert_eq!(text(&echo.stdout), "again\n");
}

#[test]
fn components_that_import_what_nodes_do_not_give_are_refused_naming_the_import() {
    let bench = Bench::new();
    let sockets = bench.refused(r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#);
    assert!(sockets.contains("wasi:sockets/tcp@0.2.0"), "{sockets}");
    assert!(sockets.contains("network access"), "{sockets}");
    let http =
        bench.refused(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#);
    assert!(http.contains("wasi:http/outgoing-handler@0.2.0"), "{http}");
    let preview3 = bench.refused(r#"(component (import "wasi:cli/stdout@0.3.0" (instance)))"#);
    assert!(preview3.contains("0.3.0"), "{preview3}");
    let no_run = bench.refused(r#"(component (import "wasi:cli/stdout@0.2.0" (instance)))"#);
    assert!(no_run.contains("wasi:cli/run"), "{no_run}");
}
