//! WASI 0.2 components (`wasi:cli/command`): the linker that gives a component what a preview 1
//! module gets, and nothing more.
//!
//! A component links against the interfaces of [`crate::WASI_INTERFACES`]: the `wasi:cli/command`
//! world without `wasi:sockets`. One that imports anything else is refused before it is compiled
//! ([`crate::module::admit`] names the import). wasmtime-wasi's implementations are used, with
//! the same context a module gets, and a few functions replaced so each keeps a guarantee the
//! preview 1 path gives:
//!
//! - Clock pollables (`subscribe-duration`, `subscribe-instant`) wait in slices that end at
//!   cancellation or the deadline and hold while the attempt is paused; on a virtual clock
//!   they are ready at once with the clock moved on, so a deterministic sleep takes no time.
//!   wasmtime-wasi's own would sleep on the host, where no epoch check can stop them. `poll`
//!   and `block` then make the epoch callback's checks, so a stopped wait traps at once.
//! - Writes to streams and descriptors, and `set-size`, hold the disk limit before a byte lands
//!   ([`AttemptState::reserve_growth`]). A stream does not say which file it writes, so near
//!   the limit its bytes count as growth until a measurement says otherwise.
//! - Links and symlinks are refused, as for modules.

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self as fs_types, Descriptor, ErrorCode, HostDescriptor, PathFlags,
};
use wasmtime_wasi::p2::bindings::sync::io::streams::{
    self, HostOutputStream, InputStream, OutputStream,
};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
use wasmtime_wasi::p2::{DynPollable, Pollable, StreamResult, subscribe};
use wasmtime_wasi::random::WasiRandom;

use crate::clock::AttemptClock;
use crate::state::{AttemptState, Watch};

/// The WASI 0.2 release whose interfaces wasmtime-wasi implements; a component built against
/// any earlier 0.2 release links against them too.
const WASI_VERSION: &str = "0.2.12";

/// How long a clock wait sleeps before looking at the attempt's control again.
const SLEEP_SLICE: Duration = Duration::from_millis(5);

/// The linker of components: WASI 0.2 without sockets, with the replacements above.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<AttemptState>> {
    let mut linker = Linker::new(engine);
    add_wasi(&mut linker)?;
    linker.allow_shadowing(true);
    replace_clock_waits(&mut linker)?;
    stop_after_waits(&mut linker)?;
    hold_stream_writes(&mut linker)?;
    hold_descriptor_writes(&mut linker)?;
    refuse_links(&mut linker)?;
    linker.allow_shadowing(false);
    Ok(linker)
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(state: &mut AttemptState) -> &mut ResourceTable {
    state.ctx().table
}

fn add_wasi(l: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    type S = AttemptState;
    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    sync::filesystem::types::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    random::random::add_to_linker::<S, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    sync::io::error::add_to_linker::<S, HasIo>(l, table)?;
    sync::io::poll::add_to_linker::<S, HasIo>(l, table)?;
    sync::io::streams::add_to_linker::<S, HasIo>(l, table)?;
    Ok(())
}

/// A wait on the guest's monotonic clock until `until_ns`.
struct GuestSleep {
    until_ns: u64,
    clock: AttemptClock,
    watch: Watch,
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestSleep {
    async fn ready(&mut self) {
        // Virtual time: every clock pollable of a poll is ready at once, so a poll of two
        // timers reports both; deterministic, if not what a real clock would do.
        if self.clock.skip_to(self.until_ns) {
            return;
        }
        loop {
            // A guest that must stop wakes up; its next epoch check ends it. A pause blocks
            // here, as it does in the epoch callback.
            if self.watch.check_running().is_err() {
                return;
            }
            let now_ns = self.clock.monotonic_ns();
            if now_ns >= self.until_ns {
                return;
            }
            let left = Duration::from_nanos(self.until_ns - now_ns);
            tokio::time::sleep(left.min(SLEEP_SLICE)).await;
        }
    }
}

fn sleep_until(
    store: &mut StoreContextMut<'_, AttemptState>,
    until_ns: impl FnOnce(&AttemptClock) -> u64,
) -> wasmtime::Result<Resource<DynPollable>> {
    let state = store.data_mut();
    let clock = state.clock.clone();
    let sleep = GuestSleep {
        until_ns: until_ns(&clock),
        watch: state.watch().clone(),
        clock,
    };
    let table = table(state);
    let sleep = table.push(sleep)?;
    subscribe(table, sleep)
}

fn replace_clock_waits(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    let mut clock = linker.instance(&format!("wasi:clocks/monotonic-clock@{WASI_VERSION}"))?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, AttemptState>, (duration_ns,): (u64,)| {
            let pollable = sleep_until(&mut store, |clock| {
                clock.monotonic_ns().saturating_add(duration_ns)
            })?;
            Ok((pollable,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, AttemptState>, (when_ns,): (u64,)| {
            Ok((sleep_until(&mut store, |_| when_ns)?,))
        },
    )?;
    Ok(())
}

/// `poll` and `block` as wasmtime-wasi has them, then the attempt's checks: a wait that ended
/// because the guest must stop traps at once, and one that ended while paused holds there.
fn stop_after_waits(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    use sync::io::poll::{Host, HostPollable};
    let mut poll = linker.instance(&format!("wasi:io/poll@{WASI_VERSION}"))?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, AttemptState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            let ready = Host::poll(table(store.data_mut()), pollables)?;
            store.data().check_running()?;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, AttemptState>, (pollable,): (Resource<DynPollable>,)| {
            HostPollable::block(table(store.data_mut()), pollable)?;
            store.data().check_running()?;
            Ok(())
        },
    )?;
    Ok(())
}

type StreamReturn = wasmtime::Result<(Result<(), streams::StreamError>,)>;

/// Holds the disk limit, then writes through wasmtime-wasi, counting what was written.
fn guarded_write(
    store: &mut StoreContextMut<'_, AttemptState>,
    bytes: u64,
    write: impl FnOnce(&mut ResourceTable) -> StreamResult<()>,
) -> StreamReturn {
    let state = store.data_mut();
    state.reserve_growth(bytes)?;
    match write(table(state)) {
        Ok(()) => {
            state.note_written(bytes)?;
            Ok((Ok(()),))
        }
        Err(error) => Ok((Err(streams::Host::convert_stream_error(
            table(state),
            error,
        )?),)),
    }
}

fn hold_stream_writes(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    type Store<'a> = StoreContextMut<'a, AttemptState>;
    let mut io = linker.instance(&format!("wasi:io/streams@{WASI_VERSION}"))?;
    io.func_wrap(
        "[method]output-stream.write",
        |mut store: Store<'_>, (stream, bytes): (Resource<OutputStream>, Vec<u8>)| {
            guarded_write(&mut store, bytes.len() as u64, |table| {
                HostOutputStream::write(table, stream, bytes)
            })
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Store<'_>, (stream, bytes): (Resource<OutputStream>, Vec<u8>)| {
            guarded_write(&mut store, bytes.len() as u64, |table| {
                HostOutputStream::blocking_write_and_flush(table, stream, bytes)
            })
        },
    )?;
    io.func_wrap(
        "[method]output-stream.write-zeroes",
        |mut store: Store<'_>, (stream, len): (Resource<OutputStream>, u64)| {
            guarded_write(&mut store, len, |table| {
                HostOutputStream::write_zeroes(table, stream, len)
            })
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: Store<'_>, (stream, len): (Resource<OutputStream>, u64)| {
            guarded_write(&mut store, len, |table| {
                HostOutputStream::blocking_write_zeroes_and_flush(table, stream, len)
            })
        },
    )?;
    hold_splices(&mut io)
}

/// Splices move up to `len` bytes from an input stream (a file of `/input`, say) to an output
/// stream; the bound holds for the most they can move.
fn hold_splices(
    io: &mut wasmtime::component::LinkerInstance<'_, AttemptState>,
) -> wasmtime::Result<()> {
    type Store<'a> = StoreContextMut<'a, AttemptState>;
    type Splice = (Resource<OutputStream>, Resource<InputStream>, u64);
    type Spliced = wasmtime::Result<(Result<u64, streams::StreamError>,)>;
    fn spliced(
        store: &mut Store<'_>,
        len: u64,
        splice: impl FnOnce(&mut ResourceTable) -> StreamResult<u64>,
    ) -> Spliced {
        let state = store.data_mut();
        state.reserve_growth(len)?;
        match splice(table(state)) {
            Ok(moved) => {
                state.note_written(moved)?;
                Ok((Ok(moved),))
            }
            Err(error) => Ok((Err(streams::Host::convert_stream_error(
                table(state),
                error,
            )?),)),
        }
    }
    io.func_wrap(
        "[method]output-stream.splice",
        |mut store: Store<'_>, (to, from, len): Splice| {
            spliced(&mut store, len, |table| {
                HostOutputStream::splice(table, to, from, len)
            })
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: Store<'_>, (to, from, len): Splice| {
            spliced(&mut store, len, |table| {
                HostOutputStream::blocking_splice(table, to, from, len)
            })
        },
    )?;
    Ok(())
}

/// The size of the file behind `fd`, if it has one (a directory or a bad descriptor has not:
/// the call itself then answers with its error).
fn file_size(state: &mut AttemptState, fd: &Resource<Descriptor>) -> Option<u64> {
    let fd = Resource::new_borrow(fd.rep());
    let stat = HostDescriptor::stat(&mut state.filesystem(), fd).ok()?;
    Some(stat.size)
}

/// Holds the disk limit for an operation that makes the file behind `fd` at least `end_bytes`
/// long: only the bytes past its current end are growth, and the file is looked at only when
/// the operation could cross the limit.
fn hold_file_end(
    state: &mut AttemptState,
    fd: &Resource<Descriptor>,
    end_bytes: u64,
) -> wasmtime::Result<()> {
    if state.write_surely_fits(end_bytes) {
        return Ok(());
    }
    if let Some(size) = file_size(state, fd) {
        state.reserve_growth(end_bytes.saturating_sub(size))?;
    }
    Ok(())
}

type FsReturn<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

fn fs_return<T>(state: &mut AttemptState, result: wasmtime_wasi::p2::FsResult<T>) -> FsReturn<T> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(error) => Ok((Err(fs_types::Host::convert_error_code(
            &mut state.filesystem(),
            error,
        )?),)),
    }
}

fn hold_descriptor_writes(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    type Store<'a> = StoreContextMut<'a, AttemptState>;
    let mut types = linker.instance(&format!("wasi:filesystem/types@{WASI_VERSION}"))?;
    types.func_wrap(
        "[method]descriptor.write",
        |mut store: Store<'_>, (fd, bytes, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            let state = store.data_mut();
            let len = bytes.len() as u64;
            hold_file_end(state, &fd, offset.saturating_add(len))?;
            let result = HostDescriptor::write(&mut state.filesystem(), fd, bytes, offset);
            if let Ok(written) = result {
                state.note_written(written)?;
            }
            fs_return(state, result)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-size",
        |mut store: Store<'_>, (fd, size): (Resource<Descriptor>, u64)| {
            let state = store.data_mut();
            hold_file_end(state, &fd, size)?;
            let result = HostDescriptor::set_size(&mut state.filesystem(), fd, size);
            fs_return(state, result)
        },
    )?;
    // A stream that starts past the end leaves a hole the size of the gap.
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: Store<'_>, (fd, offset): (Resource<Descriptor>, u64)| {
            let state = store.data_mut();
            hold_file_end(state, &fd, offset)?;
            let result = HostDescriptor::write_via_stream(&mut state.filesystem(), fd, offset);
            fs_return(state, result)
        },
    )?;
    Ok(())
}

fn refuse_links(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    type Store<'a> = StoreContextMut<'a, AttemptState>;
    type Link = (
        Resource<Descriptor>,
        PathFlags,
        String,
        Resource<Descriptor>,
        String,
    );
    let mut types = linker.instance(&format!("wasi:filesystem/types@{WASI_VERSION}"))?;
    types.func_wrap("[method]descriptor.link-at", |_: Store<'_>, _: Link| {
        Ok((Err::<(), _>(ErrorCode::NotPermitted),))
    })?;
    types.func_wrap(
        "[method]descriptor.symlink-at",
        |_: Store<'_>, _: (Resource<Descriptor>, String, String)| {
            Ok((Err::<(), _>(ErrorCode::NotPermitted),))
        },
    )?;
    Ok(())
}
