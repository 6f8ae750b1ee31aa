//! The hostile-guest suite: guests written to break out of the sandbox or to wear down the node
//! that runs them, one test per kind of attack.
//!
//! Every case shows three things. The attempt ends with a typed [`Outcome`] that names what was
//! refused (or, where the guest only probes, every probe fails with an errno). The same
//! [`Sandbox`] runs a normal task right afterwards, so the agent keeps serving. And the
//! attempt's directory is gone once its report is dropped, so nothing is left on disk. Cases are
//! bounded by their deadline or fuel; none asserts how long anything took.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sandbox::{
    Attempt, AttemptLimits, Determinism, ModuleLimits, Outcome, Prepared, RunReport, Sandbox,
    SandboxConfig,
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

/// WASI errno values the cases expect.
const ERRNO_BADF: u8 = 8;
const ERRNO_FAULT: u8 = 21;
const ERRNO_NOMEM: u8 = 48;
const ERRNO_NOTSOCK: u8 = 57;
const ERRNO_NOTSUP: u8 = 58;

/// The probe's exit code for an operation the sandbox denied.
const DENIED: Outcome = Outcome::ExitCode(3);

/// One sandbox, as one agent has, with a directory for its attempts and one for the host's own
/// files that guests must neither reach nor change.
struct Bench {
    sandbox: Sandbox,
    attempts: tempfile::TempDir,
    host: tempfile::TempDir,
    next: AtomicU32,
}

/// A finished attempt and where its directory was.
struct Ended {
    report: RunReport,
    work_dir: PathBuf,
}

impl Ended {
    fn outcome(&self) -> &Outcome {
        &self.report.outcome
    }

    /// Drops the report, which must take the attempt's directory with it.
    fn discard(self) {
        let Ended { report, work_dir } = self;
        drop(report);
        assert!(
            !work_dir.exists(),
            "{} is left on disk after its report was dropped",
            work_dir.display()
        );
    }
}

impl Bench {
    fn new() -> Self {
        Self {
            sandbox: Sandbox::new(SandboxConfig::default()).unwrap(),
            attempts: tempfile::tempdir().unwrap(),
            host: tempfile::tempdir().unwrap(),
            next: AtomicU32::new(0),
        }
    }

    fn prepare(&self, wasm: &[u8]) -> Prepared {
        self.sandbox
            .prepare(*blake3::hash(wasm).as_bytes(), wasm, false)
            .unwrap_or_else(|reason| panic!("the module was refused: {reason}"))
    }

    fn wat(&self, text: &str) -> Prepared {
        self.prepare(&wat::parse_str(text).unwrap())
    }

    /// Why the sandbox refuses to prepare `wasm`.
    fn refused(&self, wasm: &[u8]) -> String {
        match self
            .sandbox
            .prepare(*blake3::hash(wasm).as_bytes(), wasm, false)
        {
            Ok(_) => panic!("the module was prepared, but it should have been refused"),
            Err(reason) => reason,
        }
    }

    fn refused_wat(&self, text: &str) -> String {
        self.refused(&wat::parse_str(text).unwrap())
    }

    fn attempt(&self, args: &[&str]) -> Attempt {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        Attempt::plain(
            self.attempts.path().join(format!("attempt-{index}")),
            "guest",
            args.iter().map(|arg| (*arg).to_owned()).collect(),
            limits(),
        )
    }

    fn run(&self, prepared: &Prepared, attempt: Attempt) -> Ended {
        let work_dir = attempt.work_dir.clone();
        let report = self.sandbox.run(prepared, attempt);
        Ended { report, work_dir }
    }

    /// Runs `attempt`, asserts how it ended and that its directory goes with its report, and
    /// returns its stdout.
    fn expect(&self, prepared: &Prepared, attempt: Attempt, expected: Outcome) -> Vec<u8> {
        let ended = self.run(prepared, attempt);
        assert_eq!(
            *ended.outcome(),
            expected,
            "stdout {:?}, stderr {:?}",
            text(&ended.report.stdout),
            text(&ended.report.stderr)
        );
        let stdout = ended.report.stdout.clone();
        ended.discard();
        stdout
    }

    fn probe(&self, args: &[&str]) -> Ended {
        let prepared = self.prepare(guests::PROBE);
        self.run(&prepared, self.attempt(args))
    }

    fn expect_probe(&self, args: &[&str], expected: Outcome) -> Vec<u8> {
        let prepared = self.prepare(guests::PROBE);
        self.expect(&prepared, self.attempt(args), expected)
    }

    /// A host file with `contents`, outside every attempt directory.
    fn host_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.host.path().join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// The agent keeps serving: a normal task on the same sandbox succeeds, and no attempt of
    /// this bench left anything on disk.
    fn still_serves(&self) {
        let stdout = self.expect_probe(&["echo", "still", "serving"], Outcome::Succeeded);
        assert_eq!(text(&stdout), "still serving\n");
        let left: Vec<_> = fs::read_dir(self.attempts.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "attempt directories left behind: {left:?}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `condition` until it holds, for at most ten seconds.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < give_up, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Binary modules built byte by byte, for bombs too large or too odd to write as text.
mod binary {
    pub use guests::binary::leb128;
    use guests::binary::section;

    /// Signed LEB128, as `i32.const` takes its operand.
    fn sleb128(mut value: i64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            let sign_bit = byte & 0x40 != 0;
            if (value == 0 && !sign_bit) || (value == -1 && sign_bit) {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn header() -> Vec<u8> {
        b"\0asm\x01\0\0\0".to_vec()
    }

    /// The type section with one type, `() -> ()`.
    fn unit_type(module: &mut Vec<u8>) {
        section(1, &[1, 0x60, 0, 0], module);
    }

    /// `count` functions of type `() -> ()` whose bodies do nothing.
    pub fn many_functions(count: u32) -> Vec<u8> {
        let mut module = header();
        unit_type(&mut module);
        let mut functions = Vec::new();
        leb128(u64::from(count), &mut functions);
        functions.resize(functions.len() + count as usize, 0);
        section(3, &functions, &mut module);
        let mut code = Vec::new();
        leb128(u64::from(count), &mut code);
        for _ in 0..count {
            // Size 2: no locals, `end`.
            code.extend_from_slice(&[2, 0, 0x0b]);
        }
        section(10, &code, &mut module);
        module
    }

    /// One function, exported as `_start`, whose body is `body` (locals included) plus `end`.
    pub fn one_function(body: &[u8]) -> Vec<u8> {
        let mut module = header();
        unit_type(&mut module);
        section(3, &[1, 0], &mut module);
        section(7, b"\x01\x06_start\x00\x00", &mut module);
        let mut function = body.to_vec();
        function.push(0x0b);
        let mut code = vec![1];
        leb128(function.len() as u64, &mut code);
        code.extend_from_slice(&function);
        section(10, &code, &mut module);
        module
    }

    /// One page of memory, an empty `_start`, and an active data segment of `bytes` zeros at
    /// `offset`.
    pub fn data_segment(offset: i32, bytes: usize) -> Vec<u8> {
        let mut module = header();
        unit_type(&mut module);
        section(3, &[1, 0], &mut module);
        section(5, &[1, 0, 1], &mut module);
        section(7, b"\x02\x06_start\x00\x00\x06memory\x02\x00", &mut module);
        section(10, &[1, 2, 0, 0x0b], &mut module);
        // One active segment for memory 0 at `i32.const offset`.
        let mut data = vec![1, 0, 0x41];
        sleb128(i64::from(offset), &mut data);
        data.push(0x0b);
        leb128(bytes as u64, &mut data);
        data.resize(data.len() + bytes, 0);
        section(11, &data, &mut module);
        module
    }
}

#[test]
fn cpu_spin_is_stopped_by_its_deadline_or_its_fuel() {
    let bench = Bench::new();
    let spin = bench.wat(guests::SPIN_WAT);
    let mut by_deadline = bench.attempt(&[]);
    by_deadline.limits.fuel_max = u64::MAX / 2;
    by_deadline.limits.deadline = Duration::from_millis(200);
    bench.expect(&spin, by_deadline, Outcome::DeadlineExceeded);

    let mut by_fuel = bench.attempt(&[]);
    by_fuel.limits.fuel_max = 10_000_000;
    let ended = bench.run(&spin, by_fuel);
    assert_eq!(*ended.outcome(), Outcome::OutOfFuel);
    assert_eq!(ended.report.usage.fuel_used, 10_000_000, "every unit spent");
    ended.discard();

    // The same in compiled Rust, and a sleep far past the deadline inside a host call.
    let probe = bench.prepare(guests::PROBE);
    let mut rust_spin = bench.attempt(&["spin"]);
    rust_spin.limits.fuel_max = 50_000_000;
    bench.expect(&probe, rust_spin, Outcome::OutOfFuel);
    let mut asleep = bench.attempt(&["sleep", "3600000"]);
    asleep.limits.deadline = Duration::from_millis(200);
    bench.expect(&probe, asleep, Outcome::DeadlineExceeded);

    // A start function runs while the module is instantiated, before `_start`: same limits.
    let start = bench.wat(
        "(module (memory (export \"memory\") 1)
           (func $spin (loop $forever (br $forever)))
           (start $spin)
           (func (export \"_start\")))",
    );
    let mut start_by_deadline = bench.attempt(&[]);
    start_by_deadline.limits.fuel_max = u64::MAX / 2;
    start_by_deadline.limits.deadline = Duration::from_millis(200);
    bench.expect(&start, start_by_deadline, Outcome::DeadlineExceeded);
    let mut start_by_fuel = bench.attempt(&[]);
    start_by_fuel.limits.fuel_max = 10_000_000;
    bench.expect(&start, start_by_fuel, Outcome::OutOfFuel);
    bench.still_serves();
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let bench = Bench::new();
    let ended = bench.run(&bench.wat(guests::MEMORY_GROW_WAT), bench.attempt(&[]));
    assert_eq!(*ended.outcome(), Outcome::MemoryLimit);
    assert!(ended.report.usage.memory_peak_bytes <= limits().memory_bytes_max);
    ended.discard();
    bench.expect_probe(&["alloc", "1024"], Outcome::MemoryLimit);

    // Memories that are too large from the start, 32-bit and 64-bit.
    let huge_minimum =
        bench.wat("(module (memory (export \"memory\") 60000) (func (export \"_start\")))");
    bench.expect(&huge_minimum, bench.attempt(&[]), Outcome::MemoryLimit);
    let huge_memory64 =
        bench.wat("(module (memory (export \"memory\") i64 100000) (func (export \"_start\")))");
    bench.expect(&huge_memory64, bench.attempt(&[]), Outcome::MemoryLimit);

    // The cap holds for all memories together: two that fit each but not both are refused,
    // and a store takes at most 16. Shared memories need threads, which are off.
    let two_small =
        bench.wat("(module (memory (export \"memory\") 1) (memory 1) (func (export \"_start\")))");
    bench.expect(&two_small, bench.attempt(&[]), Outcome::Succeeded);
    let two_large = bench
        .wat("(module (memory (export \"memory\") 600) (memory 600) (func (export \"_start\")))");
    bench.expect(&two_large, bench.attempt(&[]), Outcome::MemoryLimit);
    let many_memories = format!(
        "(module (memory (export \"memory\") 1) {} (func (export \"_start\")))",
        "(memory 1) ".repeat(16)
    );
    bench.expect(
        &bench.wat(&many_memories),
        bench.attempt(&[]),
        Outcome::ModuleRejected(
            "cannot instantiate: resource limit exceeded: memory count too high at 17".to_owned(),
        ),
    );
    let shared = bench
        .refused_wat("(module (memory (export \"memory\") 1 1 shared) (func (export \"_start\")))");
    assert!(shared.contains("threads must be enabled"), "{shared}");
    bench.still_serves();
}

#[test]
fn table_growth_stops_at_the_cap() {
    let bench = Bench::new();
    bench.expect(
        &bench.wat(guests::TABLE_GROW_WAT),
        bench.attempt(&[]),
        Outcome::MemoryLimit,
    );
    let huge_minimum = bench.wat(
        "(module (memory (export \"memory\") 1) (table 2000000 funcref) (func (export \"_start\")))",
    );
    bench.expect(&huge_minimum, bench.attempt(&[]), Outcome::MemoryLimit);
    // The elements of all tables count together.
    let two_large = bench.wat(
        "(module (memory (export \"memory\") 1) (table 600000 funcref) (table 600000 funcref) \
         (func (export \"_start\")))",
    );
    bench.expect(&two_large, bench.attempt(&[]), Outcome::MemoryLimit);
    let many_tables = format!(
        "(module (memory (export \"memory\") 1) {} (func (export \"_start\")))",
        "(table 1 funcref) ".repeat(65)
    );
    bench.expect(
        &bench.wat(&many_tables),
        bench.attempt(&[]),
        Outcome::ModuleRejected(
            "cannot instantiate: resource limit exceeded: table count too high at 65".to_owned(),
        ),
    );
    bench.still_serves();
}

#[test]
fn deep_recursion_exhausts_the_guest_stack_not_the_host() {
    let bench = Bench::new();
    // On the native stack, with small frames and with frames of a thousand locals.
    let small_frames = bench.wat(
        "(module (memory (export \"memory\") 1)
           (func $down (param i64) (result i64)
             (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
           (func (export \"_start\") (drop (call $down (i64.const 0)))))",
    );
    let large_frames = bench.wat(&format!(
        "(module (memory (export \"memory\") 1)
           (func $down (param i64) (result i64) {}
             (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
           (func (export \"_start\") (drop (call $down (i64.const 0)))))",
        "(local i64) ".repeat(1000)
    ));
    for recursion in [small_frames, large_frames] {
        bench.expect(
            &recursion,
            bench.attempt(&[]),
            Outcome::Trap("wasm trap: call stack exhausted".to_owned()),
        );
    }
    // Compiled Rust keeps its frames on a shadow stack in linear memory, below the data; it
    // runs off the bottom of memory.
    let stdout = bench.expect_probe(
        &["recurse"],
        Outcome::Trap("wasm trap: out of bounds memory access".to_owned()),
    );
    assert_eq!(text(&stdout), "recursing\n");
    bench.still_serves();
}

#[test]
fn a_stdout_flood_is_cut_at_its_cap() {
    let bench = Bench::new();
    let ended = bench.probe(&["stdout-flood"]);
    assert_eq!(*ended.outcome(), Outcome::OutputTooLarge("stdout".into()));
    assert_eq!(
        ended.report.stdout.len() as u64,
        limits().stdout_bytes_max,
        "kept up to the cap"
    );
    ended.discard();
    bench.still_serves();
}

#[test]
fn a_stderr_flood_is_cut_at_its_cap() {
    let bench = Bench::new();
    let ended = bench.probe(&["stderr-flood"]);
    assert_eq!(*ended.outcome(), Outcome::OutputTooLarge("stderr".into()));
    assert_eq!(ended.report.stderr.len() as u64, limits().stderr_bytes_max);
    assert_eq!(text(&ended.report.stdout), "flooding stderr\n");
    ended.discard();
    bench.still_serves();
}

#[test]
fn an_output_flood_by_bytes_stops_at_the_cap() {
    let bench = Bench::new();
    let probe = bench.prepare(guests::PROBE);
    // Watched from outside, the flood never passes the cap on disk: the write (1 MiB) that
    // would cross it is refused before a byte of it lands. On a loaded machine the watcher
    // may not be scheduled while a short flood runs, so floods run until it sees one.
    let mut largest_seen = 0;
    for _ in 0..20 {
        let flood = bench.attempt(&["output-flood"]);
        largest_seen = largest_file_while_running(&bench, &probe, flood, "output/flood.bin");
        assert!(
            largest_seen <= limits().output_bytes_max,
            "the flood reached {largest_seen} bytes on disk"
        );
        if largest_seen > 0 {
            break;
        }
    }
    assert!(largest_seen > 0, "the watcher saw one of 20 floods");

    // /scratch counts too, even when the guest writes it all at once and returns before any
    // periodic check.
    let burst = (limits().output_bytes_max + (2 << 20)).to_string();
    let burst = bench.attempt(&["write", "/scratch/burst", &burst]);
    let largest_seen = largest_file_while_running(&bench, &probe, burst, "scratch/burst");
    assert!(
        largest_seen <= limits().output_bytes_max,
        "the burst reached {largest_seen} bytes on disk"
    );
    bench.still_serves();
}

#[test]
fn a_guest_at_its_output_cap_may_still_rewrite_what_it_wrote() {
    let bench = Bench::new();
    let cap = limits().output_bytes_max;
    // Fills /output/f to exactly the cap in one write, then overwrites its first MiB with
    // pwrite, and again after seeking back: nothing grows, so nothing is refused. Any errno
    // becomes the exit code.
    let guest = bench.wat(&format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_pwrite"
            (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") {pages})
          (data (i32.const 16) "f")
          (func $check (param i32) (if (local.get 0) (then (call $exit (local.get 0)))))
          (func (export "_start")
            ;; /output is descriptor 4; the new file's descriptor goes to 0.
            (call $check (call $open (i32.const 4) (i32.const 0) (i32.const 16) (i32.const 1)
              (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 0)))
            ;; An iovec at 32: the whole cap, taken from address 4096.
            (i32.store (i32.const 32) (i32.const 4096))
            (i32.store (i32.const 36) (i32.const {cap}))
            (call $check (call $write (i32.load (i32.const 0)) (i32.const 32) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const 36) (i32.const {mib}))
            (call $check (call $pwrite (i32.load (i32.const 0)) (i32.const 32) (i32.const 1)
              (i64.const 0) (i32.const 8)))
            (call $check (call $seek (i32.load (i32.const 0)) (i64.const 0) (i32.const 0) (i32.const 8)))
            (call $check (call $write (i32.load (i32.const 0)) (i32.const 32) (i32.const 1) (i32.const 8)))))"#,
        pages = cap / 65536 + 2,
        mib = 1 << 20,
    ));
    let ended = bench.run(&guest, bench.attempt(&[]));
    assert_eq!(*ended.outcome(), Outcome::Succeeded);
    let sizes: Vec<u64> = ended
        .report
        .outputs
        .files
        .iter()
        .map(|file| file.size_bytes)
        .collect();
    assert_eq!(sizes, vec![cap]);
    ended.discard();

    // One byte more than the cap, in one write, is refused before it lands.
    let over = bench.wat(&format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") {pages})
          (data (i32.const 16) "f")
          (func (export "_start")
            (drop (call $open (i32.const 4) (i32.const 0) (i32.const 16) (i32.const 1)
              (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 0)))
            (i32.store (i32.const 32) (i32.const 4096))
            (i32.store (i32.const 36) (i32.const {over}))
            (drop (call $write (i32.load (i32.const 0)) (i32.const 32) (i32.const 1) (i32.const 8)))
            (unreachable)))"#,
        pages = cap / 65536 + 2,
        over = cap + 1,
    ));
    let over_attempt = bench.attempt(&[]);
    let largest_seen = largest_file_while_running(&bench, &over, over_attempt, "output/f");
    assert_eq!(
        largest_seen, 0,
        "the refused write left {largest_seen} bytes"
    );
    bench.still_serves();
}

/// Runs `attempt`, which must end with `/output` over its cap, while watching the size of the
/// file at `relative` in its work dir; returns the largest size seen.
fn largest_file_while_running(
    bench: &Bench,
    probe: &Prepared,
    attempt: Attempt,
    relative: &str,
) -> u64 {
    let file = attempt.work_dir.join(relative);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut largest = 0;
            while !done.load(Ordering::Relaxed) {
                if let Ok(metadata) = fs::metadata(&file) {
                    largest = largest.max(metadata.len());
                }
            }
            largest
        });
        bench.expect(probe, attempt, Outcome::OutputTooLarge("/output".into()));
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap()
    })
}

#[test]
fn an_output_flood_by_file_count_stops_at_the_cap() {
    let bench = Bench::new();
    bench.expect_probe(
        &["files", "500"],
        Outcome::OutputTooLarge("/output file count".into()),
    );
    bench.still_serves();
}

#[test]
fn a_flood_of_empty_directories_stops_at_the_entry_cap() {
    let bench = Bench::new();
    // 200 directories hold no bytes and no files, and the guest ends before the first
    // periodic check: only the count of every entry, made again at the end, sees them.
    bench.expect(
        &bench.wat(guests::DIR_FLOOD_WAT),
        bench.attempt(&[]),
        Outcome::OutputTooLarge("/output file count".into()),
    );
    bench.still_serves();
}

#[test]
fn deep_directory_trees_are_stopped_and_removed() {
    let bench = Bench::new();
    // As deep as the guest gets before it is stopped; removing it must not depend on depth.
    bench.expect(
        &bench.wat(guests::DEEP_TREE_WAT),
        bench.attempt(&[]),
        Outcome::OutputTooLarge("/output depth".into()),
    );
    // Names long enough to pass PATH_MAX within 24 levels, with 8 MiB hidden at the bottom.
    bench.expect(
        &bench.wat(guests::HIDDEN_FLOOD_WAT),
        bench.attempt(&[]),
        Outcome::OutputTooLarge("/output depth".into()),
    );
    bench.still_serves();
}

#[test]
fn paths_out_of_the_preopens_reach_no_host_file() {
    let bench = Bench::new();
    let secret = bench.host_file("secret.txt", b"the owner's");
    let secret = secret.to_str().unwrap();
    for path in [
        "/etc/passwd",
        secret,
        "/proc/self/environ",
        "/input/../../etc/passwd",
        "/output/../../../../../../etc/passwd",
        "/scratch/../input/../../secret.txt",
    ] {
        let stdout = bench.expect_probe(&["read", path], DENIED);
        assert!(
            text(&stdout).starts_with("denied"),
            "{path}: {}",
            text(&stdout)
        );
    }
    for dir in ["/", "/output/..", "/output/../..", "/input/../scratch/.."] {
        bench.expect_probe(&["ls", dir], DENIED);
    }
    bench.expect_probe(&["write", "/input/planted", "10"], DENIED);
    let up = format!("/output/../../{}", "x".repeat(10));
    bench.expect_probe(&["write", &up, "10"], DENIED);
    // The probe's own tour: symlinks to /etc/passwd, `..` from a changed directory, `/`.
    let escape = text(&bench.expect_probe(&["escape"], Outcome::Succeeded));
    assert!(!escape.contains("ESCAPED"), "{escape}");
    assert_eq!(escape.matches(": denied").count(), 7, "{escape}");
    bench.still_serves();
}

#[test]
fn preopen_renumbering_links_and_read_only_inputs_change_nothing_on_the_host() {
    let bench = Bench::new();
    let source = bench.host_file("data.txt", b"the input");
    let modified = fs::metadata(&source).unwrap().modified().unwrap();
    let tricks = bench.wat(guests::PREOPEN_TRICKS_WAT);
    let mut attempt = bench.attempt(&[]);
    attempt.inputs = vec![("data.txt".into(), source.clone())];
    let ended = bench.run(&tricks, attempt);
    assert_eq!(*ended.outcome(), Outcome::Succeeded);
    let errnos = &ended.report.stdout;
    assert_eq!(errnos.len(), 25, "{errnos:?}");
    // Steps that work (see preopen_tricks.wat): a read-only open, renumbering it onto stderr,
    // creating /output/x, closing /input, renumbering /output and creating a file through it.
    let works = [3, 5, 14, 19, 21, 22];
    // Links are refused by the sandbox itself, before wasmtime-wasi sees them.
    let links = [10, 11, 12];
    for (step, &errno) in errnos.iter().enumerate() {
        if works.contains(&step) {
            assert_eq!(errno, 0, "step {step} should work: {errnos:?}");
        } else if links.contains(&step) {
            assert_eq!(errno, ERRNO_NOTSUP, "step {step}: {errnos:?}");
        } else {
            assert_ne!(errno, 0, "step {step} should fail: {errnos:?}");
        }
    }
    let outputs: Vec<_> = ended
        .report
        .outputs
        .files
        .iter()
        .map(|file| file.path.as_str())
        .collect();
    assert_eq!(outputs, ["via-renumbered", "x"], "no link, no moved input");
    ended.discard();
    assert_eq!(fs::read(&source).unwrap(), b"the input");
    assert_eq!(fs::metadata(&source).unwrap().modified().unwrap(), modified);
    bench.still_serves();
}

#[test]
fn links_planted_in_output_are_never_followed_by_the_host() {
    let bench = Bench::new();
    // A guest cannot make links (the previous case), so plant them from outside while the
    // guest is held in a pause, as a future hole in WASI might let it.
    let precious = bench.host_file("precious.txt", b"keep me");
    let precious_dir = bench.host.path().join("precious-dir");
    fs::create_dir(&precious_dir).unwrap();
    fs::write(precious_dir.join("inside"), b"keep me too").unwrap();
    let probe = bench.prepare(guests::PROBE);
    let attempt = bench.attempt(&["sleep", "10"]);
    let output = attempt.work_dir.join("output");
    let control = Arc::clone(&attempt.control);
    control.pause();
    let ended = std::thread::scope(|scope| {
        let running = scope.spawn(|| bench.run(&probe, attempt));
        wait_until("the attempt's /output exists", || output.exists());
        std::os::unix::fs::symlink(&precious, output.join("file-link")).unwrap();
        std::os::unix::fs::symlink(&precious_dir, output.join("dir-link")).unwrap();
        fs::hard_link(&precious, output.join("hard-link")).unwrap();
        control.resume();
        running.join().unwrap()
    });
    match ended.outcome() {
        Outcome::InvalidOutput(message) => assert!(
            message.starts_with("/output/") && message.contains("-link is not a regular file"),
            "{message}"
        ),
        other => panic!("expected InvalidOutput, got {other:?}"),
    }
    assert!(ended.report.outputs.files.is_empty());
    ended.discard();
    assert_eq!(fs::read(&precious).unwrap(), b"keep me");
    assert_eq!(
        fs::read(precious_dir.join("inside")).unwrap(),
        b"keep me too"
    );
    bench.still_serves();
}

#[test]
fn the_host_environment_is_invisible() {
    let bench = Bench::new();
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test itself runs with a PATH to hide"
    );
    let probe = bench.prepare(guests::PROBE);
    let stdout = bench.expect(&probe, bench.attempt(&["env"]), Outcome::Succeeded);
    assert_eq!(text(&stdout), "", "no variable the job did not declare");
    let mut declared = bench.attempt(&["env"]);
    declared.env = vec![("LANG".into(), "C".into())];
    let stdout = bench.expect(&probe, declared, Outcome::Succeeded);
    assert_eq!(text(&stdout), "LANG=C\n");
    bench.still_serves();
}

#[test]
fn no_socket_is_reachable() {
    let bench = Bench::new();
    let stdout = bench.expect(
        &bench.wat(guests::SOCKETS_WAT),
        bench.attempt(&[]),
        Outcome::Succeeded,
    );
    assert_eq!(stdout.len(), 256);
    for (fd, errnos) in stdout.chunks(4).enumerate() {
        // 0-2 are stdio and 3-5 the preopened directories; nothing else is open.
        let expected = if fd <= 5 { ERRNO_NOTSOCK } else { ERRNO_BADF };
        assert_eq!(errnos, [expected; 4], "descriptor {fd}");
    }
    // Socket creation exists only outside preview 1; none of it links.
    for (module, name, signature) in [
        (
            "wasi_snapshot_preview1",
            "sock_open",
            "(param i32 i32 i32) (result i32)",
        ),
        (
            "wasi_snapshot_preview1",
            "sock_connect",
            "(param i32 i32 i32) (result i32)",
        ),
        (
            "wasi:sockets/tcp-create-socket@0.2.0",
            "create-tcp-socket",
            "(param i32 i32)",
        ),
        (
            "wasi:sockets/ip-name-lookup@0.2.0",
            "resolve-addresses",
            "(param i32 i32 i32 i32)",
        ),
    ] {
        let reason = bench.refused_wat(&format!(
            "(module (import \"{module}\" \"{name}\" (func {signature}))
               (memory (export \"memory\") 1) (func (export \"_start\")))"
        ));
        assert_eq!(
            reason,
            format!("cannot link: unknown import: `{module}::{name}` has not been defined")
        );
    }
    bench.still_serves();
}

/// The clock readings `clocks.wat` writes: per clock id 0-3, the errno and value of
/// `clock_res_get` and of `clock_time_get`; then two monotonic readings.
#[derive(Debug, PartialEq, Eq)]
struct ClockReadings {
    clocks: [[u64; 4]; 4],
    monotonic_again: [u64; 2],
}

impl ClockReadings {
    fn parse(stdout: &[u8]) -> Self {
        assert_eq!(stdout.len(), 144);
        let words: Vec<u64> = stdout
            .chunks(8)
            .map(|word| u64::from_le_bytes(word.try_into().unwrap()))
            .collect();
        Self {
            clocks: std::array::from_fn(|id| std::array::from_fn(|i| words[id * 4 + i])),
            monotonic_again: [words[16], words[17]],
        }
    }
}

// Compares the guest's wall clock with the host's.
#[allow(clippy::disallowed_methods)]
#[test]
fn clocks_do_not_fingerprint_the_host() {
    const MILLISECOND: u64 = 1_000_000;
    let bench = Bench::new();
    let clocks = bench.wat(guests::CLOCKS_WAT);
    let readings =
        ClockReadings::parse(&bench.expect(&clocks, bench.attempt(&[]), Outcome::Succeeded));
    let [realtime, monotonic, process, thread] = readings.clocks;
    // Both clocks tick in whole milliseconds, too coarse to time caches or branches.
    assert_eq!(realtime[..2], [0, MILLISECOND]);
    assert_eq!(monotonic[..2], [0, MILLISECOND]);
    assert_eq!(realtime[3] % MILLISECOND, 0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(realtime[3].abs_diff(now.as_nanos() as u64) < 60_000_000_000);
    // The monotonic clock starts near zero for each attempt: it tells nothing of the host's
    // uptime.
    for reading in [
        monotonic[3],
        readings.monotonic_again[0],
        readings.monotonic_again[1],
    ] {
        assert_eq!(reading % MILLISECOND, 0);
        assert!(reading < limits().deadline.as_nanos() as u64, "{reading}");
    }
    // The CPU-time clocks, which tasks read to know a checkpoint is due, are the monotonic
    // clock again: coarse, and counting from the attempt's start.
    for cpu_clock in [process, thread] {
        assert_eq!(cpu_clock[..3], [0, MILLISECOND, 0]);
        assert_eq!(cpu_clock[3] % MILLISECOND, 0);
        assert!(cpu_clock[3] < limits().deadline.as_nanos() as u64);
    }

    // In deterministic mode both clocks are virtual: in 2001, a microsecond per reading, and
    // the same on every run.
    let wasm = wat::parse_str(guests::CLOCKS_WAT).unwrap();
    let virtual_clocks = bench
        .sandbox
        .prepare(*blake3::hash(&wasm).as_bytes(), &wasm, true)
        .unwrap();
    let run_virtual = || {
        let mut attempt = bench.attempt(&[]);
        attempt.determinism = Determinism::Seeded(7);
        bench.expect(&virtual_clocks, attempt, Outcome::Succeeded)
    };
    let first = run_virtual();
    assert_eq!(first, run_virtual(), "the same readings on every run");
    let readings = ClockReadings::parse(&first);
    let [realtime, monotonic, process, thread] = readings.clocks;
    assert_eq!(realtime[1], 1_000, "a virtual clock steps in microseconds");
    // In deterministic mode the CPU-time clocks count fuel, ten units a nanosecond: the same
    // reading at the same point of the work on any node, and it grows with the work.
    assert_eq!(process[1], 1);
    assert!(
        process[3] > 0 && thread[3] > process[3],
        "{process:?} {thread:?}"
    );
    let year_2001 = 978_307_200_000_000_000..1_009_843_200_000_000_000;
    assert!(year_2001.contains(&realtime[3]), "{}", realtime[3]);
    assert!(monotonic[3] < MILLISECOND);
    bench.still_serves();
}

#[test]
fn a_module_with_too_many_functions_is_refused_before_compiling() {
    let bench = Bench::new();
    let functions_max = ModuleLimits::default().functions_max;
    let reason = bench.refused(&binary::many_functions(functions_max + 1));
    assert_eq!(
        reason,
        format!("module defines more than {functions_max} functions, more than this node compiles")
    );
    // A function section that claims four billion functions is refused on the claim alone.
    let mut claims = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x05".to_vec();
    binary::leb128(u64::from(u32::MAX), &mut claims);
    assert!(
        bench
            .refused(&claims)
            .contains("more than this node compiles")
    );

    // One function too large, one nested too deep, one with four billion locals.
    let body_max = ModuleLimits::default().function_bytes_max as usize;
    let mut huge_body = vec![0];
    huge_body.resize(body_max + 1, 0x01);
    assert!(
        bench
            .refused(&binary::one_function(&huge_body))
            .starts_with("a function body of")
    );
    for (opener, depth) in [(0x02, 100_000), (0x03, 1_000)] {
        let mut nested = vec![0];
        nested.extend([opener, 0x40].repeat(depth));
        nested.extend(vec![0x0b; depth]);
        let reason = bench.refused(&binary::one_function(&nested));
        assert!(reason.contains("flatten its control flow"), "{reason}");
    }
    let locals = bench.refused(&binary::one_function(&[
        1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f,
    ]));
    assert!(locals.contains("too many locals"), "{locals}");
    bench.still_serves();
}

#[test]
fn a_huge_data_segment_is_refused_and_one_that_does_not_fit_fails_cleanly() {
    let bench = Bench::new();
    let module_max = ModuleLimits::default().module_bytes_max;
    let huge = binary::data_segment(0, module_max);
    assert!(huge.len() > module_max);
    assert_eq!(
        bench.refused(&huge),
        format!(
            "module is {} bytes, more than the {module_max} this node compiles",
            huge.len()
        )
    );
    drop(huge);

    // Under the size cap, but past the end of its one page of memory, or wrapping around it.
    let out_of_bounds = Outcome::ModuleRejected(
        "cannot instantiate: wasm trap: out of bounds memory access".to_owned(),
    );
    for (offset, bytes) in [(65_000, 1_000), (0, 1 << 20), (-1, 2)] {
        let module = bench.prepare(&binary::data_segment(offset, bytes));
        bench.expect(&module, bench.attempt(&[]), out_of_bounds.clone());
    }
    bench.still_serves();
}

#[test]
fn modules_that_are_not_wasi_commands_are_refused_with_a_reason() {
    let bench = Bench::new();
    let executable = bench.refused(b"MZ\x90\x00\x03\x00\x00\x00");
    assert_eq!(
        executable,
        "not a WebAssembly binary (it does not start with \\0asm)"
    );
    // An empty component is no command: it has no `wasi:cli/run` for a node to call.
    let component = bench.refused(b"\0asm\x0d\0\x01\0");
    assert!(component.contains("wasi:cli/run"), "{component}");
    let garbage = bench.refused(b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f");
    assert!(garbage.starts_with("malformed module: "), "{garbage}");
    let no_command = Outcome::ModuleRejected(
        "the module exports no `_start() -> ()`; build it as a WASI command".to_owned(),
    );
    for module in [
        "(module (memory (export \"memory\") 1))",
        "(module (memory (export \"memory\") 1) (func (export \"_start\") (param i32)))",
        "(module (memory (export \"memory\") 1) (global (export \"_start\") i32 (i32.const 0)))",
    ] {
        bench.expect(&bench.wat(module), bench.attempt(&[]), no_command.clone());
    }
    bench.still_serves();
}

#[test]
fn imports_the_host_does_not_offer_are_refused() {
    let bench = Bench::new();
    let missing = bench.refused_wat(guests::MISSING_IMPORT_WAT);
    assert_eq!(
        missing,
        "cannot link: unknown import: `env::does_not_exist` has not been defined"
    );
    for (import, expected) in [
        (
            "(import \"wasi_unstable\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))",
            "unknown import: `wasi_unstable::fd_write`",
        ),
        (
            "(import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32) (result i32)))",
            "incompatible import type for `wasi_snapshot_preview1::fd_write`",
        ),
        (
            "(import \"env\" \"memory\" (memory 1))",
            "unknown import: `env::memory`",
        ),
        (
            "(import \"env\" \"table\" (table 1 funcref))",
            "unknown import: `env::table`",
        ),
        (
            "(import \"env\" \"stack_pointer\" (global (mut i32)))",
            "unknown import: `env::stack_pointer`",
        ),
    ] {
        let reason = bench.refused_wat(&format!(
            "(module {import} (memory (export \"memory\") 1) (func (export \"_start\")))"
        ));
        assert!(reason.starts_with("cannot link: "), "{reason}");
        assert!(reason.contains(expected), "{reason}");
    }
    bench.still_serves();
}

#[test]
fn concurrent_attempts_cannot_see_each_other() {
    let bench = Bench::new();
    let probe = bench.prepare(guests::PROBE);
    // B holds a secret input and sleeps; A knows B's host paths and tries every way to them.
    let secret = bench.host_file("secret.txt", b"B's secret");
    let mut holder = bench.attempt(&["sleep", "200"]);
    holder.inputs = vec![("secret.txt".into(), secret.clone())];
    let holder_dir = holder.work_dir.clone();
    let holder_name = holder_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let holder_input = holder_dir.join("input/secret.txt");
    let holder_output = holder_dir.join("output");
    let absolute_secret = holder_input.to_str().unwrap().to_owned();
    let absolute_output = holder_output.to_str().unwrap().to_owned();
    let planted = format!("{absolute_output}/planted");
    let climbed_secret = format!("/input/../../{holder_name}/input/secret.txt");
    let climbed_output = format!("/output/../../{holder_name}/output/planted");
    let sibling = format!("/scratch/../../{holder_name}");
    let tries: [&[&str]; 7] = [
        &["read", &absolute_secret],
        &["read", &climbed_secret],
        &["ls", &absolute_output],
        &["ls", &sibling],
        &["ls", "/input/../.."],
        &["write", &planted, "10"],
        &["write", &climbed_output, "10"],
    ];
    let (bench, probe) = (&bench, &probe);
    let holder_ended = std::thread::scope(|scope| {
        let holding = scope.spawn(|| bench.run(probe, holder));
        wait_until("B's input is in place", || holder_input.exists());
        let tried: Vec<_> = tries
            .iter()
            .map(|args| scope.spawn(move || bench.run(probe, bench.attempt(args))))
            .collect();
        for (args, attempt) in tries.iter().zip(tried) {
            let ended = attempt.join().unwrap();
            assert_eq!(*ended.outcome(), DENIED, "{args:?}");
            assert!(text(&ended.report.stdout).starts_with("denied"), "{args:?}");
            ended.discard();
        }
        holding.join().unwrap()
    });
    assert_eq!(*holder_ended.outcome(), Outcome::Succeeded);
    assert_eq!(text(&holder_ended.report.stdout), "slept 200\n");
    assert!(!holder_output.join("planted").exists());
    holder_ended.discard();

    // Four at once, each with an input of its own: each sees only its own.
    let inputs: Vec<PathBuf> = (0..4)
        .map(|i| bench.host_file(&format!("input-{i}"), format!("input {i}").as_bytes()))
        .collect();
    std::thread::scope(|scope| {
        let runs: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let mut attempt = bench.attempt(&["copy-inputs"]);
                attempt.inputs = vec![(format!("mine-{i}"), input.clone())];
                scope.spawn(move || (i, bench.run(probe, attempt)))
            })
            .collect();
        for run in runs {
            let (i, ended) = run.join().unwrap();
            assert_eq!(*ended.outcome(), Outcome::Succeeded);
            let files = &ended.report.outputs.files;
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].path, format!("mine-{i}"));
            let mut expected = format!("input {i}").into_bytes();
            expected.reverse();
            assert_eq!(fs::read(&files[0].host_path).unwrap(), expected);
            ended.discard();
        }
    });
    bench.still_serves();
}

#[test]
fn a_descriptor_hog_is_stopped_before_the_host_runs_out() {
    let bench = Bench::new();
    bench.expect(
        &bench.wat(guests::DESCRIPTOR_HOG_WAT),
        bench.attempt(&[]),
        Outcome::Trap(
            "the task holds more than 256 files open at once; close files it no longer needs"
                .to_owned(),
        ),
    );
    bench.still_serves();
}

#[test]
fn exit_codes_outside_wasi_range_are_traps() {
    let bench = Bench::new();
    bench.expect_probe(&["exit", "0"], Outcome::Succeeded);
    bench.expect_probe(&["exit", "1"], Outcome::ExitCode(1));
    bench.expect_probe(&["exit", "125"], Outcome::ExitCode(125));
    let invalid = Outcome::Trap("exit with invalid exit status outside of [0..126)".to_owned());
    for code in ["126", "255", "-1", "-2147483648"] {
        bench.expect_probe(&["exit", code], invalid.clone());
    }
    // A Rust panic aborts, which is a trap.
    bench.expect_probe(
        &["panic"],
        Outcome::Trap("wasm trap: wasm `unreachable` instruction executed".to_owned()),
    );
    bench.still_serves();
}

#[test]
fn a_trap_in_the_middle_of_writing_output_fails_and_leaves_nothing() {
    let bench = Bench::new();
    let ended = bench.run(&bench.wat(guests::TRAP_MID_OUTPUT_WAT), bench.attempt(&[]));
    assert_eq!(
        *ended.outcome(),
        Outcome::Trap("wasm trap: wasm `unreachable` instruction executed".to_owned())
    );
    // What it wrote is listed, under an outcome that says not to trust it, and goes with the
    // report.
    let files = &ended.report.outputs.files;
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].path.as_str(), files[0].size_bytes),
        ("partial.txt", 14)
    );
    ended.discard();
    bench.still_serves();
}

#[test]
fn pointers_and_lengths_outside_memory_trap_or_fail_without_touching_the_host() {
    let bench = Bench::new();
    let abuse = bench.wat(guests::HOST_CALL_ABUSE_WAT);
    enum Expect {
        Trap(&'static str),
        Errno(u8),
    }
    for (call, expect) in [
        ("a", Expect::Trap("Pointer out of bounds")),
        ("b", Expect::Trap("Pointer out of bounds")),
        ("c", Expect::Trap("Pointer out of bounds")),
        ("d", Expect::Trap("Pointer not aligned")),
        // The host refuses to copy more than a bound per call, before touching memory.
        ("e", Expect::Errno(ERRNO_NOMEM)),
        ("f", Expect::Errno(ERRNO_NOMEM)),
        ("g", Expect::Errno(ERRNO_NOMEM)),
        // Reads copy only what there is (nothing: stdin is empty and /output too).
        ("h", Expect::Errno(0)),
        ("i", Expect::Errno(ERRNO_FAULT)),
        ("j", Expect::Errno(ERRNO_FAULT)),
        ("k", Expect::Trap("Pointer out of bounds")),
        ("l", Expect::Trap("Pointer out of bounds")),
        ("m", Expect::Errno(0)),
        // Four GiB of random bytes for a 64 KiB guest: refused before any is made.
        ("n", Expect::Trap("requested len 4294967295 exceeds limit")),
    ] {
        let mut attempt = bench.attempt(&[call]);
        attempt.env = vec![("PADDING".into(), "x".repeat(100))];
        let ended = bench.run(&abuse, attempt);
        match (ended.outcome(), expect) {
            (Outcome::Trap(message), Expect::Trap(start)) => {
                assert!(message.starts_with(start), "{call}: {message}");
            }
            (Outcome::Succeeded, Expect::Errno(errno)) => {
                assert_eq!(ended.report.stdout, [errno], "{call}");
            }
            (other, _) => panic!("{call}: unexpected {other:?}"),
        }
        ended.discard();
    }
    bench.still_serves();
}

#[test]
fn a_poll_mixing_a_long_clock_with_descriptors_returns_at_once() {
    let bench = Bench::new();
    let mut attempt = bench.attempt(&[]);
    // If any of the three polls slept, the deadline would end the attempt.
    attempt.limits.deadline = Duration::from_secs(5);
    let stdout = bench.expect(
        &bench.wat(guests::MIXED_POLL_WAT),
        attempt,
        Outcome::Succeeded,
    );
    let words: Vec<u32> = stdout
        .chunks(4)
        .map(|word| u32::from_le_bytes(word.try_into().unwrap()))
        .collect();
    // stdin and stdout are ready, so each poll returns its one event; a directory cannot be
    // polled at all.
    assert_eq!(words, [0, 1, 0, 1, u32::from(ERRNO_BADF), 0]);
    bench.still_serves();
}

#[test]
fn input_names_that_climb_out_are_refused_at_setup() {
    let bench = Bench::new();
    let source = bench.host_file("source.txt", b"data");
    let probe = bench.prepare(guests::PROBE);
    let outside = bench.attempts.path().join("escaped.txt");
    let absolute = bench.host.path().join("planted.txt");
    for name in [
        "../escaped.txt",
        "../../escaped.txt",
        absolute.to_str().unwrap(),
        "sub/dir.txt",
        "..",
    ] {
        let mut attempt = bench.attempt(&["ls", "/input"]);
        attempt.inputs = vec![(name.to_owned(), source.clone())];
        let ended = bench.run(&probe, attempt);
        match ended.outcome() {
            Outcome::SetupFailed(message) => {
                assert!(message.contains("not a plain file name"), "{message}");
            }
            other => panic!("{name:?}: expected SetupFailed, got {other:?}"),
        }
        ended.discard();
    }
    assert!(!outside.exists());
    assert!(!absolute.exists());
    bench.still_serves();
}
