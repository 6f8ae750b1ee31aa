//! The preview 1 clock calls, replaced so that the CPU-time clocks mean something: a task that
//! checkpoints reads them to know when a checkpoint is due.
//!
//! wasmtime-wasi answers only the realtime and monotonic clocks; those calls still go to it.
//! Here the CPU-time clocks (process and thread: a task has one thread) count the time the task
//! has run since it (re)started. Outside deterministic mode that is the attempt's coarse
//! monotonic clock, so they tell the task nothing the monotonic clock does not. In
//! deterministic mode it is the fuel the task used, [`FUEL_PER_NS`] units a nanosecond, so
//! every node sees the same readings at the same point of the task's work and checkpoints
//! there.

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;

use crate::clock::AttemptClock;
use crate::poll::{ERRNO_FAULT, ERRNO_SUCCESS, WASI, guest_wasi};
use crate::state::AttemptState;

/// Fuel counts WebAssembly operators, several of which make one machine instruction: on the
/// machines measured, compiled code used about ten units a nanosecond. The same on every node,
/// whatever its speed, so that deterministic tasks checkpoint at the same points.
const FUEL_PER_NS: u64 = 10;

const CLOCKID_PROCESS_CPUTIME: i32 = 2;
const CLOCKID_THREAD_CPUTIME: i32 = 3;

/// Replaces `clock_time_get` and `clock_res_get` in `linker`, which already holds
/// wasmtime-wasi's.
pub(crate) fn install(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, AttemptState>, id: i32, precision: i64, time: i32| {
            if !is_cputime(id) {
                let Some((wasi, memory)) = guest_wasi(&mut caller) else {
                    return Ok(ERRNO_FAULT);
                };
                let memory = &mut wiggle::GuestMemory::Unshared(memory);
                return p1::clock_time_get(wasi, memory, id, precision, time);
            }
            let now_ns = cputime_ns(&caller);
            Ok(write_u64(&mut caller, time, now_ns))
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_res_get",
        |mut caller: Caller<'_, AttemptState>, id: i32, resolution: i32| {
            if !is_cputime(id) {
                let Some((wasi, memory)) = guest_wasi(&mut caller) else {
                    return Ok(ERRNO_FAULT);
                };
                let memory = &mut wiggle::GuestMemory::Unshared(memory);
                return p1::clock_res_get(wasi, memory, id, resolution);
            }
            let resolution_ns = match caller.data().clock {
                AttemptClock::Virtual { .. } => 1,
                AttemptClock::Real { .. } => caller.data().clock.resolution_ns(),
            };
            Ok(write_u64(&mut caller, resolution, resolution_ns))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn is_cputime(id: i32) -> bool {
    matches!(id, CLOCKID_PROCESS_CPUTIME | CLOCKID_THREAD_CPUTIME)
}

/// Writes `value` at the guest's address `at`; the errno to return.
fn write_u64(caller: &mut Caller<'_, AttemptState>, at: i32, value: u64) -> i32 {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return ERRNO_FAULT;
    };
    let at = at as u32 as usize;
    match memory.data_mut(caller).get_mut(at..at.saturating_add(8)) {
        Some(slot) => {
            slot.copy_from_slice(&value.to_le_bytes());
            ERRNO_SUCCESS
        }
        None => ERRNO_FAULT,
    }
}

/// How long the task has run: the fuel it used in deterministic mode (when fuel is metered),
/// the monotonic clock otherwise.
fn cputime_ns(caller: &Caller<'_, AttemptState>) -> u64 {
    let state = caller.data();
    match (&state.clock, caller.get_fuel()) {
        (AttemptClock::Virtual { .. }, Ok(left)) => {
            state.fuel_max().saturating_sub(left) / FUEL_PER_NS
        }
        _ => state.clock.monotonic_ns(),
    }
}
