//! The sandbox of one agent: one wasmtime `Engine`, the WASI linker, the epoch ticker and the
//! cache of compiled modules keyed by blob hash.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use wasmtime::{Config, Engine, Linker};

use crate::SandboxError;
use crate::attempt::{self, Attempt, Metering, RunReport};
use crate::code::{Code, Program};
use crate::compile_child::{CompileOrder, Compiler, compile_in_child};
use crate::control::AttemptControl;
use crate::disk_cache::DiskCache;
use crate::module::{self, ModuleLimits};
use crate::state::AttemptState;
use crate::workdir::RecycleBin;
use crate::{component, cputime, poll, writes};

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// How often running guests are interrupted to check deadline, cancellation, pause and disk
    /// use. Shorter stops a runaway sooner and costs a little more.
    pub epoch_tick: Duration,
    /// Compiled modules kept in memory.
    pub compiled_modules_max: usize,
    pub module_limits: ModuleLimits,
    /// Native stack a guest may use before it traps with stack exhaustion.
    pub wasm_stack_bytes_max: usize,
    /// Fuel metering and epoch interruption. Agents always run with both: without fuel there is
    /// no CPU limit or count, without epochs no deadline, cancellation, pause or disk check
    /// while guest code runs. Switching them off is only for measuring what they cost.
    pub metering: Metering,
    /// Where emptied attempt trees wait for the next attempts; it must be on the filesystem of
    /// the attempts' work dirs. Without one, every attempt makes and removes its own tree.
    pub recycle_dir: Option<PathBuf>,
    /// Where compiled modules are kept across restarts (see `disk_cache`), and the bytes they
    /// may take there. Without one, every start compiles again.
    pub compiled_dir: Option<PathBuf>,
    pub compiled_dir_bytes_max: u64,
    /// Where modules are compiled: a child process can be stopped, and needs `compiled_dir`
    /// to hand its code back through.
    pub compiler: Compiler,
}

/// Emptied attempt trees kept at most; one per slot is enough.
const RECYCLED_TREES_MAX: usize = 256;

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            epoch_tick: Duration::from_millis(5),
            compiled_modules_max: 64,
            module_limits: ModuleLimits::default(),
            wasm_stack_bytes_max: 1 << 20,
            metering: Metering::default(),
            recycle_dir: None,
            compiled_dir: None,
            compiled_dir_bytes_max: 4 << 30,
            compiler: Compiler::InProcess,
        }
    }
}

/// One per agent. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// It holds two engines: NaN canonicalisation, which deterministic mode needs, is compiled into
/// the code and slows float-heavy guests several times over, so only deterministic jobs pay for
/// it. Each engine has its own module cache; the deterministic one is made on first use.
pub struct Sandbox {
    config: SandboxConfig,
    plain: Arc<Flavor>,
    deterministic: OnceLock<Arc<Flavor>>,
    bin: Option<Arc<RecycleBin>>,
    disk: Option<DiskCache>,
    /// One lock per module being compiled (by key and mode): attempts of one module that
    /// start together wait for one compile instead of each making their own.
    compiling: Mutex<HashMap<([u8; 32], bool), CompileGate>>,
}

/// Held while one module is compiled for one mode.
type CompileGate = Arc<Mutex<()>>;

/// A module compiled by this node and linked against WASI: instantiating it is cheap.
#[derive(Clone)]
pub struct Prepared {
    program: Program,
    flavor: Arc<Flavor>,
    from_disk: bool,
}

impl Prepared {
    /// Whether its code was loaded from the on-disk cache rather than compiled by this process.
    pub fn from_disk(&self) -> bool {
        self.from_disk
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// One engine with everything tied to its configuration.
struct Flavor {
    engine: Engine,
    linker: Linker<AttemptState>,
    components: wasmtime::component::Linker<AttemptState>,
    compiled: Mutex<ModuleCache>,
    ticker: EpochTicker,
    deterministic: bool,
    metering: Metering,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Flavor {
    fn new(config: &SandboxConfig, deterministic: bool) -> Result<Self, SandboxError> {
        let engine = Engine::new(&engine_config(config, deterministic))
            .map_err(|error| SandboxError::Engine(format!("{error:#}")))?;
        let engine_error = |error: wasmtime::Error| SandboxError::Engine(format!("{error:#}"));
        let linker = wasi_linker(&engine).map_err(engine_error)?;
        let components = component::linker(&engine).map_err(engine_error)?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Self {
            engine,
            linker,
            components,
            compiled: Mutex::new(ModuleCache::new(config.compiled_modules_max)),
            ticker,
            deterministic,
            metering: config.metering,
        })
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let bin = match &config.recycle_dir {
            Some(dir) => Some(RecycleBin::open(dir, RECYCLED_TREES_MAX).map_err(|source| {
                SandboxError::WorkDir {
                    path: dir.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let disk = match &config.compiled_dir {
            Some(dir) => Some(DiskCache::open(dir, config.compiled_dir_bytes_max).map_err(
                |source| SandboxError::WorkDir {
                    path: dir.clone(),
                    source,
                },
            )?),
            None => None,
        };
        Ok(Self {
            plain: Arc::new(Flavor::new(&config, false)?),
            deterministic: OnceLock::new(),
            config,
            bin,
            disk,
            compiling: Mutex::new(HashMap::new()),
        })
    }

    fn flavor(&self, deterministic: bool) -> Result<&Arc<Flavor>, String> {
        if !deterministic {
            return Ok(&self.plain);
        }
        if let Some(flavor) = self.deterministic.get() {
            return Ok(flavor);
        }
        let flavor = Flavor::new(&self.config, true).map_err(|error| error.to_string())?;
        Ok(self.deterministic.get_or_init(|| Arc::new(flavor)))
    }

    /// Drops the module of blob `key` compiled for either mode, from memory and from disk: its
    /// job was deleted, and nothing of it should stay. Attempts that hold it keep it until
    /// they end.
    pub fn forget(&self, key: &[u8; 32]) {
        self.plain.compiled.lock().entries.remove(key);
        if let Some(flavor) = self.deterministic.get() {
            flavor.compiled.lock().entries.remove(key);
        }
        self.forget_on_disk(key);
    }

    /// Drops the compiled code of blob `key` from disk only: a sealed module's code is kept in
    /// memory while the agent runs, never where it would outlive the attempts.
    pub fn forget_on_disk(&self, key: &[u8; 32]) {
        if let Some(disk) = &self.disk {
            disk.forget(key);
        }
    }

    /// The module compiled and linked before for this mode, if it is still cached.
    pub fn cached(&self, key: &[u8; 32], deterministic: bool) -> Option<Prepared> {
        let flavor = if deterministic {
            self.deterministic.get()?
        } else {
            &self.plain
        };
        flavor.compiled.lock().get(key)
    }

    /// Compiles (or finds in the cache) the module `wasm`, whose blob hash is `key`, for plain
    /// or deterministic runs, and links it against WASI. `Err` says why the module is refused,
    /// for people.
    pub fn prepare(
        &self,
        key: [u8; 32],
        wasm: &[u8],
        deterministic: bool,
    ) -> Result<Prepared, String> {
        self.prepare_for(key, wasm, deterministic, &AttemptControl::new())
    }

    /// [`Self::prepare`] for an attempt: with a [`Compiler::Child`], its compile stops when
    /// `control` cancels it and pauses while `control` is paused.
    pub fn prepare_for(
        &self,
        key: [u8; 32],
        wasm: &[u8],
        deterministic: bool,
        control: &AttemptControl,
    ) -> Result<Prepared, String> {
        if let Some(prepared) = self.cached(&key, deterministic) {
            return Ok(prepared);
        }
        // The size first, cheaply; the rest of `admit` reads every operator, which only the
        // compiler needs guarding by (see `compiled`).
        module::admit_size(wasm, &self.config.module_limits)?;
        let flavor = self.flavor(deterministic)?;
        let gate = Arc::clone(
            self.compiling
                .lock()
                .entry((key, deterministic))
                .or_default(),
        );
        let _compiling = gate.lock();
        // Another attempt may have compiled it while this one waited.
        if let Some(prepared) = self.cached(&key, deterministic) {
            return Ok(prepared);
        }
        let prepared = self
            .compiled(flavor, &key, wasm, control)
            .and_then(|(code, from_disk)| {
                let prepared = Prepared {
                    program: code.link(&flavor.linker, &flavor.components)?,
                    flavor: Arc::clone(flavor),
                    from_disk,
                };
                flavor.compiled.lock().insert(key, prepared.clone());
                Ok(prepared)
            });
        // Only once the module is in the memory cache: a later attempt finds it there.
        self.compiling.lock().remove(&(key, deterministic));
        prepared
    }

    /// The module's code: from the disk cache, or compiled now (and kept there); whether it
    /// came from the disk.
    fn compiled(
        &self,
        flavor: &Flavor,
        key: &[u8; 32],
        wasm: &[u8],
        control: &AttemptControl,
    ) -> Result<(Code, bool), String> {
        if let Some(module) = self.disk.as_ref().and_then(|d| d.load(&flavor.engine, key)) {
            return Ok((module, true));
        }
        if let (Compiler::Child { .. }, Some(disk)) = (&self.config.compiler, &self.disk) {
            self.compile_in_child(flavor, key, wasm, control)?;
            let module = disk.load(&flavor.engine, key).ok_or_else(|| {
                "the compiler process left no code this node could load; see the agent's log"
                    .to_owned()
            })?;
            disk.evict();
            return Ok((module, false));
        }
        // Only what the compiler reads is checked against compile bombs: code this node
        // compiled before passed these checks then.
        module::admit(wasm, &self.config.module_limits)?;
        let module = Code::compile(&flavor.engine, wasm)?;
        if let Some(disk) = &self.disk {
            disk.store(&flavor.engine, key, &module);
        }
        Ok((module, false))
    }

    fn compile_in_child(
        &self,
        flavor: &Flavor,
        key: &[u8; 32],
        wasm: &[u8],
        control: &AttemptControl,
    ) -> Result<(), String> {
        let Compiler::Child {
            program,
            args,
            deadline,
        } = &self.config.compiler
        else {
            unreachable!("called for a child compiler only");
        };
        let order = CompileOrder {
            key: *key,
            deterministic: flavor.deterministic,
            fuel: self.config.metering.fuel,
            epoch: self.config.metering.epoch,
            wasm_stack_bytes_max: self.config.wasm_stack_bytes_max,
            limits: self.config.module_limits,
            compiled_dir: self
                .config
                .compiled_dir
                .clone()
                .expect("a child compiles into the compiled-module directory"),
        };
        compile_in_child(program, args, *deadline, &order, wasm, control)
    }

    /// Runs one attempt on the calling thread until it ends. Blocking: call it from a thread
    /// meant for it (e.g. `tokio::task::spawn_blocking`).
    ///
    /// # Panics
    ///
    /// If the attempt is deterministic and the module was prepared for plain runs: that is a
    /// bug of the caller, whose output would silently differ between nodes.
    pub fn run(&self, prepared: &Prepared, attempt: Attempt) -> RunReport {
        let deterministic = matches!(attempt.determinism, crate::Determinism::Seeded(_));
        assert_eq!(
            deterministic, prepared.flavor.deterministic,
            "a module must be prepared for the mode it runs in"
        );
        let _ticking = prepared.flavor.ticker.hold();
        attempt::run(
            &prepared.flavor.engine,
            &prepared.program,
            prepared.flavor.metering,
            attempt,
            self.bin.as_ref(),
        )
    }
}

/// The child's side of [`Compiler::Child`]: compiles the module on stdin as the order in
/// `args` says and writes its code into the order's directory. `Err` says why, for the parent
/// to pass on; the caller prints it on stderr and exits with a failure.
pub fn serve_compile_order(args: &[std::ffi::OsString]) -> Result<(), String> {
    use std::io::Read as _;
    let order = CompileOrder::parse(args)?;
    let mut wasm = Vec::new();
    std::io::stdin()
        .take(order.limits.module_bytes_max as u64 + 1)
        .read_to_end(&mut wasm)
        .map_err(|error| format!("cannot read the module: {error}"))?;
    compile_into(&order, &wasm)
}

/// A child's compile: the module admitted and compiled by an engine configured as its
/// parent's, and its code written into the parent's disk cache.
fn compile_into(order: &CompileOrder, wasm: &[u8]) -> Result<(), String> {
    let config = SandboxConfig {
        metering: Metering {
            fuel: order.fuel,
            epoch: order.epoch,
        },
        wasm_stack_bytes_max: order.wasm_stack_bytes_max,
        module_limits: order.limits,
        ..SandboxConfig::default()
    };
    let engine = Engine::new(&engine_config(&config, order.deterministic))
        .map_err(|error| format!("cannot set up the compiler: {error:#}"))?;
    module::admit(wasm, &order.limits)?;
    let module = Code::compile(&engine, wasm)?;
    DiskCache::shared(&order.compiled_dir)
        .write(&engine, &order.key, &module)
        .map_err(|error| format!("cannot write the compiled code: {error}"))
}

/// The WebAssembly proposals beyond 1.0 that both engines compile, as `engine_config` sets
/// them (wasmtime's defaults and the three it turns on). Agents report them, and modules that
/// use others go to other nodes. Threads, shared memory, GC and typed function references are
/// off; the sandbox's tests compile a module of each proposal here and refuse those.
pub const WASM_FEATURES: &[&str] = &[
    "bulk-memory",
    "exceptions",
    "extended-const",
    "memory64",
    "multi-memory",
    "reference-types",
    "relaxed-simd",
    "saturating-float-to-int",
    "sign-extension",
    "simd",
    "tail-call",
];

fn engine_config(config: &SandboxConfig, deterministic: bool) -> Config {
    let mut engine = Config::new();
    // Both flags change the compiled code, so they hold for every module of this engine and
    // every entry of its cache.
    engine.consume_fuel(config.metering.fuel);
    engine.epoch_interruption(config.metering.epoch);
    // Deterministic mode needs the same NaN bits on every CPU.
    engine.cranelift_nan_canonicalization(deterministic);
    engine.relaxed_simd_deterministic(deterministic);
    // No `threads` feature is compiled in, so shared memories and atomics.wait never validate.
    engine.max_wasm_stack(config.wasm_stack_bytes_max);
    // What current toolchains emit (wasi-sdk's C++ throws with exception handling). Exceptions
    // need wasmtime's `gc` feature and a collector for their exception objects; the GC
    // proposal itself and typed function references stay off, as no toolchain needs them.
    engine.wasm_exceptions(true);
    engine.wasm_tail_call(true);
    engine.wasm_extended_const(true);
    engine.wasm_gc(false);
    engine.wasm_function_references(false);
    engine
}

fn wasi_linker(engine: &Engine) -> wasmtime::Result<Linker<AttemptState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, AttemptState::wasi)?;
    poll::install(&mut linker)?;
    cputime::install(&mut linker)?;
    writes::install(&mut linker)?;
    Ok(linker)
}

/// A least-recently-used map of compiled modules; small, so eviction scans.
struct ModuleCache {
    entries: HashMap<[u8; 32], (Prepared, u64)>,
    capacity: usize,
    clock: u64,
}

impl ModuleCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    fn get(&mut self, key: &[u8; 32]) -> Option<Prepared> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(prepared, used)| {
            *used = clock;
            prepared.clone()
        })
    }

    fn insert(&mut self, key: [u8; 32], prepared: Prepared) {
        self.clock += 1;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (prepared, self.clock));
    }
}

/// Advances the engine's epoch every tick, but only while attempts run, so an idle agent does
/// not wake its CPU (it may be a laptop on battery).
struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

struct TickerShared {
    running: Mutex<usize>,
    wake: Condvar,
    stop: AtomicBool,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let shared = Arc::new(TickerShared {
            running: Mutex::new(0),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sandbox-epoch".to_owned())
            .spawn(move || tick_while_running(&thread_shared, &engine, tick))
            .expect("spawning the epoch thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }

    fn hold(&self) -> TickerHold<'_> {
        let mut running = self.shared.running.lock();
        *running += 1;
        // Only an idle ticker sleeps on the condvar; waking it costs a syscall per attempt.
        if *running == 1 {
            self.shared.wake.notify_all();
        }
        TickerHold(&self.shared)
    }
}

fn tick_while_running(shared: &TickerShared, engine: &Engine, tick: Duration) {
    loop {
        {
            let mut running = shared.running.lock();
            while *running == 0 && !shared.stop.load(Ordering::Acquire) {
                shared.wake.wait(&mut running);
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(tick);
        engine.increment_epoch();
    }
}

struct TickerHold<'a>(&'a TickerShared);

impl Drop for TickerHold<'_> {
    fn drop(&mut self) {
        *self.0.running.lock() -= 1;
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _running = self.shared.running.lock();
            self.shared.wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
