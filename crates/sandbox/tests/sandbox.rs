//! The sandbox against real guests: what a task can see, its attempt directory, cancellation,
//! deterministic runs and the module cache. Guests that attack the sandbox are in `hostile.rs`.

use std::sync::Arc;
use std::time::Duration;

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
    next: std::sync::atomic::AtomicU32,
}

impl Bench {
    fn new() -> Self {
        Self {
            sandbox: Sandbox::new(SandboxConfig::default()).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            next: Default::default(),
        }
    }

    fn prepare(&self, wasm: &[u8]) -> Prepared {
        self.sandbox
            .prepare(*blake3::hash(wasm).as_bytes(), wasm, false)
            .unwrap()
    }

    fn prepare_deterministic(&self, wasm: &[u8]) -> Prepared {
        self.sandbox
            .prepare(*blake3::hash(wasm).as_bytes(), wasm, true)
            .unwrap()
    }

    fn wat(&self, text: &str) -> Prepared {
        self.prepare(&wat::parse_str(text).unwrap())
    }

    fn attempt(&self, args: &[&str]) -> Attempt {
        let index = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Attempt::plain(
            self.dir.path().join(format!("attempt-{index}")),
            "guest",
            args.iter().map(|a| (*a).to_owned()).collect(),
            limits(),
        )
    }

    fn probe(&self, args: &[&str]) -> RunReport {
        let prepared = self.prepare(guests::PROBE);
        self.sandbox.run(&prepared, self.attempt(args))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_task_sees_its_args_declared_env_stdin_and_inputs_and_nothing_of_the_host() {
    let bench = Bench::new();
    let prepared = bench.prepare(guests::PROBE);
    let echo = bench
        .sandbox
        .run(&prepared, bench.attempt(&["echo", "a b", "c"]));
    assert_eq!(echo.outcome, Outcome::Succeeded);
    assert_eq!(text(&echo.stdout), "a b c\n");
    assert!(echo.usage.fuel_used > 0);

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

    let input = bench.dir.path().join("source.txt");
    std::fs::write(&input, b"abc").unwrap();
    let mut copy = bench.attempt(&["copy-inputs"]);
    copy.inputs = vec![("data.txt".into(), input.clone())];
    let copied = bench.sandbox.run(&prepared, copy);
    assert_eq!(
        copied.outcome,
        Outcome::Succeeded,
        "{}",
        text(&copied.stderr)
    );
    let file = &copied.outputs.files[0];
    assert_eq!(file.path, "data.txt");
    assert_eq!(std::fs::read(&file.host_path).unwrap(), b"cba");
    let mut write_input = bench.attempt(&["write", "/input/data.txt", "10"]);
    write_input.inputs = vec![("data.txt".into(), input.clone())];
    let denied = bench.sandbox.run(&prepared, write_input);
    assert_eq!(denied.outcome, Outcome::ExitCode(3), "/input is read-only");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        b"abc",
        "the host file is untouched"
    );
}

#[test]
fn the_attempt_directory_is_gone_once_the_outputs_are_dropped() {
    let bench = Bench::new();
    let report = bench.probe(&["files", "3"]);
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.outputs.files.len(), 3);
    let root = report.outputs.files[0]
        .host_path
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    assert!(root.exists());
    drop(report);
    assert!(!root.exists());
    let failed = bench.probe(&["output-flood"]);
    drop(failed);
    assert_eq!(
        std::fs::read_dir(bench.dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn a_running_attempt_can_be_cancelled_from_another_thread() {
    let bench = Bench::new();
    let spin = bench.wat(guests::SPIN_WAT);
    let mut attempt = bench.attempt(&[]);
    attempt.limits.fuel_max = u64::MAX / 2;
    let control = Arc::clone(&attempt.control);
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        control.cancel();
    });
    assert_eq!(
        bench.sandbox.run(&spin, attempt).outcome,
        Outcome::Cancelled
    );
    canceller.join().unwrap();
}

#[test]
fn deterministic_mode_repeats_output_and_fuel_exactly() {
    let bench = Bench::new();
    let prepared = bench.prepare_deterministic(guests::PROBE);
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
    assert_eq!(
        bench.sandbox.run(&prepared, sleeper).outcome,
        Outcome::Succeeded,
        "virtual time sleeps at once"
    );
}

#[test]
fn compiled_modules_are_cached_by_key() {
    let bench = Bench::new();
    let key = *blake3::hash(guests::WORDCOUNT).as_bytes();
    assert!(bench.sandbox.cached(&key, false).is_none());
    bench
        .sandbox
        .prepare(key, guests::WORDCOUNT, false)
        .unwrap();
    assert!(bench.sandbox.cached(&key, false).is_some());
    assert!(
        bench.sandbox.cached(&key, true).is_none(),
        "deterministic runs compile their own code"
    );
}

#[test]
fn recycled_attempt_trees_carry_nothing_from_one_attempt_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("recycled");
    let sandbox = Sandbox::new(SandboxConfig {
        recycle_dir: Some(bin.clone()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let prepared = sandbox
        .prepare(
            *blake3::hash(guests::PROBE).as_bytes(),
            guests::PROBE,
            false,
        )
        .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, b"secret input").unwrap();
    let run = |index: u32, args: &[&str]| {
        let mut attempt = Attempt::plain(
            work.join(format!("attempt-{index}")),
            "probe",
            args.iter().map(|a| (*a).to_owned()).collect(),
            limits(),
        );
        if index == 0 {
            attempt.inputs = vec![("given.txt".to_owned(), input.clone())];
        }
        let report = sandbox.run(&prepared, attempt);
        let stdout = text(&report.stdout);
        let outcome = report.outcome.clone();
        drop(report);
        assert!(
            !work.join(format!("attempt-{index}")).exists(),
            "the attempt's path is gone"
        );
        (outcome, stdout)
    };
    // An attempt that only reads its input leaves its tree as it found it, but for the input.
    assert_eq!(
        run(0, &["ls", "/input"]),
        (Outcome::Succeeded, "given.txt\n".to_owned())
    );
    assert_eq!(run(5, &["ls", "/input"]).1, "", "/input starts empty again");
    assert_eq!(run(6, &["files", "7"]).0, Outcome::Succeeded);
    assert_eq!(
        run(1, &["write", "/scratch/left-behind", "4096"]).0,
        Outcome::Succeeded
    );
    for (index, dir) in [(2, "/output"), (3, "/scratch"), (4, "/input")] {
        let (outcome, listing) = run(index, &["ls", dir]);
        assert_eq!(outcome, Outcome::Succeeded);
        assert_eq!(listing, "", "{dir} starts empty on a recycled tree");
    }
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "no attempt path is left"
    );
    let kept = std::fs::read_dir(&bin).unwrap().count();
    assert_eq!(kept, 1, "sequential attempts reuse one tree");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        b"secret input",
        "the linked input is untouched"
    );
}

#[test]
fn exceptions_tail_calls_and_extended_constants_run_in_both_modes() {
    let bench = Bench::new();
    let wasm = wat::parse_str(guests::PROPOSALS_WAT).unwrap();
    for deterministic in [false, true] {
        let prepared = bench
            .sandbox
            .prepare(*blake3::hash(&wasm).as_bytes(), &wasm, deterministic)
            .unwrap();
        let mut attempt = bench.attempt(&[]);
        if deterministic {
            attempt.determinism = Determinism::Seeded(1);
        }
        let report = bench.sandbox.run(&prepared, attempt);
        assert_eq!(
            report.outcome,
            Outcome::Succeeded,
            "deterministic: {deterministic}"
        );
        assert_eq!(text(&report.stdout), "caught 42\n");
    }
}

/// A module that uses `feature` (a name of `sandbox::WASM_FEATURES`), or one the engines must
/// refuse.
fn module_using(feature: &str) -> String {
    let body = match feature {
        "bulk-memory" => "(memory.fill (i32.const 0) (i32.const 7) (i32.const 8))",
        "exceptions" => "(try_table (call $nothing))",
        "extended-const" => "(drop (global.get $sum))",
        "memory64" => "(drop (i64.load $wide (i64.const 0)))",
        "multi-memory" => "(drop (i32.load $second (i32.const 0)))",
        "reference-types" => "(drop (ref.null extern))",
        "relaxed-simd" => "(drop (i32x4.relaxed_trunc_f32x4_s (v128.const f32x4 1.5 2.5 3.5 4.5)))",
        "saturating-float-to-int" => "(drop (i32.trunc_sat_f32_s (f32.const 1e30)))",
        "sign-extension" => "(drop (i32.extend8_s (i32.const 255)))",
        "simd" => "(drop (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 1 2 3 4)))",
        "tail-call" => "(return_call $nothing)",
        "threads" => "(drop (i32.atomic.load (i32.const 0)))",
        "gc" => "(drop (struct.new_default $pair))",
        other => panic!("no module uses {other}"),
    };
    let types = match feature {
        "gc" => "(type $pair (struct (field i32)))",
        _ => "",
    };
    format!(
        r#"(module
            {types}
            (memory (export "memory") 1)
            (memory $second 1)
            (memory $wide i64 1)
            (global $sum i32 (i32.add (i32.const 40) (i32.const 2)))
            (func $nothing)
            (func (export "_start") {body}))"#
    )
}

#[test]
fn the_engines_compile_every_proposal_agents_report_and_refuse_threads_and_gc() {
    let bench = Bench::new();
    for &feature in sandbox::WASM_FEATURES {
        // Every module has three memories, one of them 64-bit; only the body differs.
        let wasm = wat::parse_str(module_using(feature)).unwrap();
        for deterministic in [false, true] {
            let prepared = bench
                .sandbox
                .prepare(*blake3::hash(&wasm).as_bytes(), &wasm, deterministic)
                .unwrap_or_else(|why| panic!("{feature} (deterministic {deterministic}): {why}"));
            let mut attempt = bench.attempt(&[]);
            if deterministic {
                attempt.determinism = Determinism::Seeded(1);
            }
            let ran = bench.sandbox.run(&prepared, attempt);
            assert_eq!(ran.outcome, Outcome::Succeeded, "{feature}");
        }
    }
    for refused in ["threads", "gc"] {
        let wasm = wat::parse_str(module_using(refused)).unwrap();
        let why = bench
            .sandbox
            .prepare(*blake3::hash(&wasm).as_bytes(), &wasm, false)
            .map(|_| ())
            .unwrap_err();
        assert!(why.contains("does not compile"), "{refused}: {why}");
    }
}

/// A sandbox whose compiled modules are kept in `dir`.
fn with_compiled_dir(dir: &std::path::Path, bytes_max: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        compiled_dir: Some(dir.to_owned()),
        compiled_dir_bytes_max: bytes_max,
        ..SandboxConfig::default()
    })
    .unwrap()
}

#[test]
fn a_restarted_sandbox_loads_what_it_compiled_from_disk_and_recompiles_a_damaged_file() {
    let bench = Bench::new();
    let compiled = tempfile::tempdir().unwrap();
    let key = *blake3::hash(guests::PROBE).as_bytes();
    let first = with_compiled_dir(compiled.path(), 1 << 30);
    let compiled_now = first.prepare(key, guests::PROBE, false).unwrap();
    assert!(!compiled_now.from_disk(), "the first start compiles");
    drop(first);

    let restarted = with_compiled_dir(compiled.path(), 1 << 30);
    let prepared = restarted.prepare(key, guests::PROBE, false).unwrap();
    assert!(prepared.from_disk(), "a restart loads it");
    let report = restarted.run(&prepared, bench.attempt(&["echo", "from", "disk"]));
    assert_eq!(text(&report.stdout), "from disk\n");
    // The deterministic engine makes other code: it never loads the plain engine's.
    let deterministic = restarted.prepare(key, guests::PROBE, true).unwrap();
    assert!(!deterministic.from_disk());

    for entry in std::fs::read_dir(compiled.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not compiled code").unwrap();
    }
    let damaged = with_compiled_dir(compiled.path(), 1 << 30);
    let prepared = damaged.prepare(key, guests::PROBE, false).unwrap();
    assert!(!prepared.from_disk(), "a damaged file is compiled again");
    let report = damaged.run(&prepared, bench.attempt(&["echo", "again"]));
    assert_eq!(text(&report.stdout), "again\n");
}

#[test]
fn the_compiled_dir_keeps_within_its_bound_dropping_the_least_recently_used() {
    let compiled = tempfile::tempdir().unwrap();
    let files = || std::fs::read_dir(compiled.path()).unwrap().count();
    let sandbox = with_compiled_dir(compiled.path(), 1 << 30);
    let noop = wat::parse_str(guests::NOOP_WAT).unwrap();
    sandbox
        .prepare(*blake3::hash(&noop).as_bytes(), &noop, false)
        .unwrap();
    let one_file: u64 = std::fs::read_dir(compiled.path())
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    drop(sandbox);
    // Used long ago, whatever the filesystem's clock granularity.
    for entry in std::fs::read_dir(compiled.path()).unwrap() {
        let file = std::fs::File::options()
            .append(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
    }
    // Room for one compiled noop module and not two.
    let sandbox = with_compiled_dir(compiled.path(), one_file + one_file / 2);
    let spin = wat::parse_str(guests::SPIN_WAT).unwrap();
    sandbox
        .prepare(*blake3::hash(&spin).as_bytes(), &spin, false)
        .unwrap();
    assert_eq!(files(), 1, "the older file went");
    let restarted = with_compiled_dir(compiled.path(), one_file + one_file / 2);
    let kept = restarted
        .prepare(*blake3::hash(&spin).as_bytes(), &spin, false)
        .unwrap();
    assert!(kept.from_disk(), "the newer one stayed");
}

/// The module the compile deadline tests stand on: valid, admitted, and it runs.
#[test]
fn a_module_costly_to_compile_is_admitted_and_runs() {
    let bench = Bench::new();
    let prepared = bench.prepare(&guests::binary::costly_to_compile(20, 50));
    let report = bench.sandbox.run(&prepared, bench.attempt(&[]));
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert!(report.usage.fuel_used > 20 * 50);
}
