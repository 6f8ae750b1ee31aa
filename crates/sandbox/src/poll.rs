//! WASI preview 1 functions the sandbox replaces: `poll_oneoff` for clock waits, and the link
//! and symlink calls.
//!
//! wasmtime-wasi implements a sleep by blocking the host thread, where the epoch callback can
//! neither cancel it nor enforce the deadline, and where a virtual clock would not advance. The
//! replacement waits in short slices that check cancellation, pause and deadline, and skips
//! virtual time forward instantly in deterministic mode. Polls that include file descriptors go
//! to wasmtime-wasi's own implementation, called with the guest's memory; every descriptor a
//! task can have is always ready, so those never wait on their clocks.
//!
//! Links and symlinks are refused outright: tasks rarely need them and they are the usual
//! material of escapes and of tricks on whoever reads `/output` afterwards.

use std::time::Duration;

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};

use crate::state::{AttemptState, Stop};

const SUBSCRIPTION_BYTES: usize = 48;
const EVENT_BYTES: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const CLOCKID_REALTIME: u32 = 0;
const SUBCLOCKFLAG_ABSTIME: u16 = 1;
pub(crate) const ERRNO_SUCCESS: i32 = 0;
pub(crate) const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOTSUP: i32 = 58;

/// How long a real sleep waits before looking at the attempt's control flags again.
const SLEEP_SLICE: Duration = Duration::from_millis(5);

pub(crate) const WASI: &str = "wasi_snapshot_preview1";

/// Replaces the functions above in `linker`, which already holds wasmtime-wasi's.
pub(crate) fn install(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        move |mut caller: Caller<'_, AttemptState>,
              subscriptions: i32,
              events: i32,
              count: i32,
              written: i32|
              -> wasmtime::Result<i32> {
            if let Some(errno) = poll_clocks(&mut caller, subscriptions, events, count, written)? {
                return Ok(errno);
            }
            poll_descriptors(&mut caller, subscriptions, events, count, written)
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_link",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOTSUP },
    )?;
    linker.func_wrap(
        WASI,
        "path_symlink",
        |_: i32, _: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOTSUP },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// wasmtime-wasi's `poll_oneoff`, for a poll that includes a descriptor.
///
/// It is called directly, the way wasmtime-wasi's own linker entry calls it, and not through a
/// `Func` taken from the linker: a host function called from the host sees no caller, so it
/// found no memory and trapped, and every such `Func` stayed in the store until the end.
fn poll_descriptors(
    caller: &mut Caller<'_, AttemptState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    written: i32,
) -> wasmtime::Result<i32> {
    let Some((wasi, memory)) = guest_wasi(caller) else {
        return Ok(ERRNO_FAULT);
    };
    wasmtime_wasi::runtime::in_tokio(p1::poll_oneoff(
        wasi,
        &mut wiggle::GuestMemory::Unshared(memory),
        subscriptions,
        events,
        count,
        written,
    ))
}

/// The guest's WASI context and memory, the way wasmtime-wasi's own linker entries take them,
/// for calling wasmtime-wasi's implementation of a function this crate wraps; `None` if the
/// guest exports no memory.
pub(crate) fn guest_wasi<'a>(
    caller: &'a mut Caller<'_, AttemptState>,
) -> Option<(&'a mut WasiP1Ctx, &'a mut [u8])> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return None;
    };
    // The bound on what one call may make the host copy, as wasmtime-wasi's entries set it.
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (data, state) = memory.data_and_store_mut(caller);
    let wasi = state.wasi();
    wasi.set_hostcall_fuel(fuel);
    Some((wasi, data))
}

struct ClockWait {
    userdata: u64,
    timeout_ns: u64,
}

/// Handles a poll made only of clock subscriptions; `Ok(None)` hands it to wasmtime-wasi.
fn poll_clocks(
    caller: &mut Caller<'_, AttemptState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    written: i32,
) -> wasmtime::Result<Option<i32>> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(Some(ERRNO_FAULT));
    };
    let count = count as u32 as usize;
    if count == 0 {
        return Ok(Some(ERRNO_INVAL));
    }
    let (subscriptions, events, written) = (
        subscriptions as u32 as usize,
        events as u32 as usize,
        written as u32 as usize,
    );
    let waits = {
        let data = memory.data(&*caller);
        let Some(input) = data.get(subscriptions..subscriptions + count * SUBSCRIPTION_BYTES)
        else {
            return Ok(Some(ERRNO_FAULT));
        };
        let mut waits = Vec::with_capacity(count);
        for subscription in input.chunks_exact(SUBSCRIPTION_BYTES) {
            if subscription[8] != EVENTTYPE_CLOCK {
                return Ok(None);
            }
            let clock_id = u32::from_le_bytes(subscription[16..20].try_into()?);
            let timeout = u64::from_le_bytes(subscription[24..32].try_into()?);
            let flags = u16::from_le_bytes(subscription[40..42].try_into()?);
            let clock = &caller.data().clock;
            let timeout_ns = if flags & SUBCLOCKFLAG_ABSTIME == 0 {
                timeout
            } else if clock_id == CLOCKID_REALTIME {
                timeout.saturating_sub(clock.wall_ns())
            } else {
                timeout.saturating_sub(clock.monotonic_ns())
            };
            waits.push(ClockWait {
                userdata: u64::from_le_bytes(subscription[0..8].try_into()?),
                timeout_ns,
            });
        }
        waits
    };
    let shortest_ns = waits.iter().map(|wait| wait.timeout_ns).min().unwrap_or(0);
    wait(caller.data(), shortest_ns)?;

    let data = memory.data_mut(&mut *caller);
    let ready: Vec<&ClockWait> = waits
        .iter()
        .filter(|w| w.timeout_ns == shortest_ns)
        .collect();
    let Some(output) = data.get_mut(events..events + ready.len() * EVENT_BYTES) else {
        return Ok(Some(ERRNO_FAULT));
    };
    for (event, wait) in output.chunks_exact_mut(EVENT_BYTES).zip(&ready) {
        event.fill(0);
        event[0..8].copy_from_slice(&wait.userdata.to_le_bytes());
        event[10] = EVENTTYPE_CLOCK;
    }
    let Some(count_out) = data.get_mut(written..written + 4) else {
        return Ok(Some(ERRNO_FAULT));
    };
    count_out.copy_from_slice(&(ready.len() as u32).to_le_bytes());
    Ok(Some(ERRNO_SUCCESS))
}

/// Waits `duration_ns` of the guest's time, giving up at cancellation or the deadline.
fn wait(state: &AttemptState, duration_ns: u64) -> Result<(), Stop> {
    if state.clock.skip_forward(duration_ns) {
        return Ok(());
    }
    let mut remaining = Duration::from_nanos(duration_ns);
    while !remaining.is_zero() {
        state.check_running()?;
        let slice = remaining.min(SLEEP_SLICE);
        std::thread::sleep(slice);
        remaining -= slice;
    }
    state.check_running()
}
