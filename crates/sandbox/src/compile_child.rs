//! Compiling in a child process, so that a compile can be stopped. Cranelift cannot be
//! interrupted once it compiles a module (a 63 MB program holds a core for about 50 s), and a
//! thread cannot be killed; a process can. So an agent hands each compile to a child of its
//! own program ([`Compiler::Child`]): the child reads the module on stdin, compiles it with
//! an engine configured as the parent's and writes the code into the parent's disk cache (see
//! `disk_cache`), which the parent then loads. The parent watches the child: it kills it at its
//! deadline (time paused excluded) or when the attempt is cancelled, and stops and continues it
//! (SIGSTOP, SIGCONT) while the owner's policy pauses work.
//!
//! Only code this node compiled is loaded: the child is this node's own program, writing into
//! its private cache directory, and wasmtime checks the file's engine on load.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::control::AttemptControl;
use crate::module::ModuleLimits;

/// How often a parent looks at its compiling child.
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// Bytes of a failed child's stderr kept for the reason it gives.
const CHILD_MESSAGE_BYTES_MAX: u64 = 4096;

/// Where modules are compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compiler {
    /// In the agent's own process: a compile runs to its end once begun. For tests and
    /// benchmarks, and where no compiled-module directory is configured.
    #[default]
    InProcess,
    /// In a child process: `program` run with `args`, then the compile order's own arguments
    /// (see [`crate::serve_compile_order`]); stopped at `deadline` of compiling.
    Child {
        program: PathBuf,
        args: Vec<OsString>,
        deadline: Duration,
    },
}

/// What a child needs to compile as its parent would: the module's key and mode, and what
/// changes the engine's code or the node's admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompileOrder {
    pub(crate) key: [u8; 32],
    pub(crate) deterministic: bool,
    pub(crate) fuel: bool,
    pub(crate) epoch: bool,
    pub(crate) wasm_stack_bytes_max: usize,
    pub(crate) limits: ModuleLimits,
    pub(crate) compiled_dir: PathBuf,
}

impl CompileOrder {
    fn to_args(&self) -> Vec<OsString> {
        let key: String = self.key.iter().map(|b| format!("{b:02x}")).collect();
        let mut args: Vec<OsString> = [
            format!("key={key}"),
            format!("deterministic={}", u8::from(self.deterministic)),
            format!("fuel={}", u8::from(self.fuel)),
            format!("epoch={}", u8::from(self.epoch)),
            format!("stack={}", self.wasm_stack_bytes_max),
            format!("module_bytes_max={}", self.limits.module_bytes_max),
            format!("functions_max={}", self.limits.functions_max),
            format!("function_bytes_max={}", self.limits.function_bytes_max),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let mut dir = OsString::from("dir=");
        dir.push(&self.compiled_dir);
        args.push(dir);
        args
    }

    pub(crate) fn parse(args: &[OsString]) -> Result<Self, String> {
        let mut fields = std::collections::HashMap::new();
        for arg in args {
            let text = arg
                .to_str()
                .ok_or("a compile order argument is not UTF-8")?;
            let (name, value) = text
                .split_once('=')
                .ok_or_else(|| format!("{text:?} is not name=value"))?;
            fields.insert(name.to_owned(), value.to_owned());
        }
        let field = |name: &str| {
            fields
                .get(name)
                .ok_or_else(|| format!("the compile order has no {name}"))
        };
        let number = |name: &str| -> Result<u64, String> {
            field(name)?
                .parse()
                .map_err(|_| format!("{name} is not a number"))
        };
        let flag = |name: &str| Ok::<bool, String>(number(name)? == 1);
        let mut key = [0u8; 32];
        let hex = field("key")?;
        for (i, byte) in key.iter_mut().enumerate() {
            let pair = hex
                .get(2 * i..2 * i + 2)
                .ok_or("the key is not 64 hex digits")?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| "the key is not hex")?;
        }
        Ok(Self {
            key,
            deterministic: flag("deterministic")?,
            fuel: flag("fuel")?,
            epoch: flag("epoch")?,
            wasm_stack_bytes_max: number("stack")? as usize,
            limits: ModuleLimits {
                module_bytes_max: number("module_bytes_max")? as usize,
                functions_max: number("functions_max")? as u32,
                function_bytes_max: number("function_bytes_max")? as u32,
            },
            compiled_dir: PathBuf::from(field("dir")?),
        })
    }
}

/// Runs `compiler` on `wasm` for `order`, watching it as the module doc says.
pub(crate) fn compile_in_child(
    program: &PathBuf,
    args: &[OsString],
    deadline: Duration,
    order: &CompileOrder,
    wasm: &[u8],
    control: &AttemptControl,
) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .args(order.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start the compiler ({}): {error}", program.display()))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    // Written from a thread of its own: a child that stops reading (it failed, or was stopped)
    // must not hold the watch below.
    let wasm = wasm.to_vec();
    let feeder = std::thread::spawn(move || {
        let mut stdin = stdin;
        let _ = stdin.write_all(&wasm);
    });
    let watched = watch(&mut child, deadline, control);
    let _ = feeder.join();
    watched?;
    Ok(())
}

/// Waits for `child` to end; kills it at `deadline` of time not paused or on cancellation.
fn watch(child: &mut Child, deadline: Duration, control: &AttemptControl) -> Result<(), String> {
    let mut compiling = Duration::ZERO;
    let mut last = Instant::now();
    let mut stopped = false;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("the compiler: {e}"))? {
            if status.success() {
                return Ok(());
            }
            return Err(child_message(child)
                .unwrap_or_else(|| format!("the compiler process failed ({status})")));
        }
        let now = Instant::now();
        if !stopped {
            compiling += now - last;
        }
        last = now;
        if control.is_cancelled() {
            end(child);
            return Err("compiling stopped: the attempt was cancelled".to_owned());
        }
        if compiling > deadline {
            end(child);
            return Err(format!(
                "compiling took longer than {} s, the most this node spends on one module; \
                 make the module smaller, or run it on a faster node",
                deadline.as_secs_f64()
            ));
        }
        let paused = control.is_paused();
        if paused != stopped {
            signal(child, paused);
            stopped = paused;
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// SIGSTOP (`stop`) or SIGCONT to the child.
fn signal(child: &Child, stop: bool) {
    let signal = match stop {
        true => rustix::process::Signal::STOP,
        false => rustix::process::Signal::CONT,
    };
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Kills the child and reaps it, so no compiler outlives its order.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last line the failed child wrote on stderr: its reason.
fn child_message(child: &mut Child) -> Option<String> {
    let mut text = String::new();
    child
        .stderr
        .take()?
        .take(CHILD_MESSAGE_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    let line = text.lines().rev().find(|line| !line.trim().is_empty())?;
    Some(line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    //! The watch, with real processes: `sleep` stands in for a compiler that takes long.

    use super::*;
    use std::sync::Arc;

    fn order() -> CompileOrder {
        CompileOrder {
            key: [7; 32],
            deterministic: true,
            fuel: true,
            epoch: false,
            wasm_stack_bytes_max: 1 << 20,
            limits: ModuleLimits::default(),
            compiled_dir: PathBuf::from("/tmp/compiled dir"),
        }
    }

    #[test]
    fn an_order_reads_back_as_written_and_a_bad_one_is_refused() {
        let order = order();
        assert_eq!(CompileOrder::parse(&order.to_args()), Ok(order.clone()));
        let mut args = order.to_args();
        args[0] = OsString::from("key=zz");
        assert!(CompileOrder::parse(&args).unwrap_err().contains("key"));
        assert!(
            CompileOrder::parse(&args[1..])
                .unwrap_err()
                .contains("no key")
        );
    }

    /// A "compiler" that sleeps for `seconds`, given the order's arguments it ignores.
    fn sleeper(seconds: &str) -> (PathBuf, Vec<OsString>) {
        let script = format!("exec sleep {seconds}");
        let args = vec!["-c".into(), script.into(), "compiler".into()];
        (PathBuf::from("/bin/sh"), args)
    }

    #[test]
    fn a_compile_past_its_deadline_is_killed_and_says_so() {
        let (program, args) = sleeper("30");
        let control = AttemptControl::new();
        let started = Instant::now();
        let deadline = Duration::from_millis(200);
        let stopped = compile_in_child(&program, &args, deadline, &order(), b"", &control);
        assert!(stopped.unwrap_err().contains("longer than 0.2 s"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
    }

    #[test]
    fn a_cancelled_attempt_stops_its_compile_and_a_paused_one_does_not_spend_its_deadline() {
        let (program, args) = sleeper("0.3");
        let control = Arc::new(AttemptControl::new());
        control.pause();
        let resume = {
            let control = Arc::clone(&control);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2500));
                control.resume();
            })
        };
        let deadline = Duration::from_millis(700);
        let done = compile_in_child(&program, &args, deadline, &order(), b"", &control);
        resume.join().unwrap();
        assert_eq!(
            done,
            Ok(()),
            "0.8 s paused and 0.5 s compiling fit in 0.7 s"
        );

        let (program, args) = sleeper("30");
        let control = Arc::new(AttemptControl::new());
        let cancel = {
            let control = Arc::clone(&control);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                control.cancel();
            })
        };
        let deadline = Duration::from_secs(60);
        let stopped = compile_in_child(&program, &args, deadline, &order(), b"", &control);
        cancel.join().unwrap();
        assert!(stopped.unwrap_err().contains("cancelled"));
    }

    #[test]
    fn a_failed_compiler_gives_its_last_line_as_the_reason() {
        let script = "echo noise >&2; echo 'does not compile: bad' >&2; exit 3";
        let args = vec!["-c".into(), script.into(), "compiler".into()];
        let control = AttemptControl::new();
        let deadline = Duration::from_secs(10);
        let failed = compile_in_child(
            &PathBuf::from("/bin/sh"),
            &args,
            deadline,
            &order(),
            b"",
            &control,
        );
        assert_eq!(failed, Err("does not compile: bad".to_owned()));
    }
}
