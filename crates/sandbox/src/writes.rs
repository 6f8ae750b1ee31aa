//! `fd_write` and `fd_pwrite`, wrapped to count what a guest writes against its disk limit as
//! it writes, rather than only when the next periodic check walks its directories.
//!
//! The calls themselves are wasmtime-wasi's, made with the guest's memory
//! ([`crate::poll::guest_wasi`]). The bytes a call reports written then go to
//! [`AttemptState::note_written`], which measures the disk at once when they could have taken
//! it past the limit. Every descriptor counts, stdout included: a guest can renumber a file
//! in `/output` onto descriptor 1.

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wasmtime_wasi::runtime::in_tokio;

use crate::attempt::AttemptState;
use crate::poll::{ERRNO_FAULT, ERRNO_SUCCESS, WASI, guest_wasi};

/// Replaces wasmtime-wasi's `fd_write` and `fd_pwrite` in `linker`, which already holds them.
pub(crate) fn install(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, AttemptState>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         written: i32|
         -> wasmtime::Result<i32> {
            let Some((wasi, memory)) = guest_wasi(&mut caller) else {
                return Ok(ERRNO_FAULT);
            };
            let mut guest = wiggle::GuestMemory::Unshared(&mut *memory);
            let errno = in_tokio(p1::fd_write(wasi, &mut guest, fd, iovs, iovs_len, written))?;
            count_written(&mut caller, errno, written)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_pwrite",
        |mut caller: Caller<'_, AttemptState>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         offset: i64,
         written: i32|
         -> wasmtime::Result<i32> {
            let Some((wasi, memory)) = guest_wasi(&mut caller) else {
                return Ok(ERRNO_FAULT);
            };
            let mut guest = wiggle::GuestMemory::Unshared(&mut *memory);
            let errno = in_tokio(p1::fd_pwrite(
                wasi, &mut guest, fd, iovs, iovs_len, offset, written,
            ))?;
            count_written(&mut caller, errno, written)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// After a successful write, counts the bytes wasmtime-wasi stored at `written`.
fn count_written(
    caller: &mut Caller<'_, AttemptState>,
    errno: i32,
    written: i32,
) -> wasmtime::Result<i32> {
    if errno != ERRNO_SUCCESS {
        return Ok(errno);
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(errno);
    };
    let mut count = [0u8; 4];
    if memory
        .read(&*caller, written as u32 as usize, &mut count)
        .is_ok()
    {
        caller
            .data_mut()
            .note_written(u64::from(u32::from_le_bytes(count)))?;
    }
    Ok(errno)
}
