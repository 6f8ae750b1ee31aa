//! `fd_write` and `fd_pwrite`, wrapped to hold what a guest writes to its disk limit as it
//! writes, rather than only when the next periodic check walks its directories.
//!
//! Before a write that could cross the limit, the file it goes to is looked at (type, size,
//! position) and a write that would grow the guest's files past the limit stops the attempt
//! before a byte of it lands ([`AttemptState::reserve_growth`]). The calls themselves are
//! wasmtime-wasi's, made with the guest's memory ([`crate::poll::guest_wasi`]). The bytes a
//! call reports written then go to [`AttemptState::note_written`]. Every descriptor counts,
//! stdout included: a guest can renumber a file in `/output` onto descriptor 1.

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wasmtime_wasi::runtime::in_tokio;

use crate::poll::{ERRNO_FAULT, ERRNO_SUCCESS, WASI, guest_wasi};
use crate::state::AttemptState;

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
            hold_growth(&mut caller, fd, iovs, iovs_len, None)?;
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
            hold_growth(&mut caller, fd, iovs, iovs_len, Some(offset as u64))?;
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

/// Stops the attempt before a write to a file that would take the guest's files past their
/// limit. Only a write that could cross it costs more than arithmetic: then the file's type,
/// size and position are read through wasmtime-wasi, into host memory, not the guest's.
fn hold_growth(
    caller: &mut Caller<'_, AttemptState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: Option<u64>,
) -> wasmtime::Result<()> {
    // Pointers out of bounds: the write itself answers with EFAULT.
    let Some(requested) = bytes_to_write(caller, iovs, iovs_len) else {
        return Ok(());
    };
    if caller.data().write_surely_fits(requested) {
        return Ok(());
    }
    let Some((wasi, _)) = guest_wasi(caller) else {
        return Ok(());
    };
    let Some(growth) = file_growth(wasi, fd, requested, offset)? else {
        return Ok(());
    };
    caller.data_mut().reserve_growth(growth)?;
    Ok(())
}

/// The bytes one write call stores: wasmtime-wasi writes the first non-empty buffer of the
/// list, and the rest on the guest's next call.
fn bytes_to_write(caller: &mut Caller<'_, AttemptState>, iovs: i32, iovs_len: i32) -> Option<u64> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return None;
    };
    let data = memory.data(&*caller);
    let start = iovs as u32 as usize;
    for index in 0..iovs_len as u32 as usize {
        let at = start.checked_add(index.checked_mul(8)?)?;
        let entry = data.get(at..at.checked_add(8)?)?;
        let length = u32::from_le_bytes(entry[4..8].try_into().expect("four bytes"));
        if length > 0 {
            return Some(u64::from(length));
        }
    }
    Some(0)
}

/// How far a write of `bytes` at `offset` (or at the file's position) would grow the regular
/// file open as `fd`; `None` for anything else (stdout, a pipe, a bad descriptor).
fn file_growth(
    wasi: &mut WasiP1Ctx,
    fd: i32,
    bytes: u64,
    offset: Option<u64>,
) -> wasmtime::Result<Option<u64>> {
    let mut record = Record([0; 64]);
    if record.fill(|host| in_tokio(p1::fd_fdstat_get(wasi, host, fd, 0)))? != ERRNO_SUCCESS
        || record.0[FDSTAT_FILETYPE_AT] != FILETYPE_REGULAR_FILE
    {
        return Ok(None);
    }
    let append = record.u16_at(FDSTAT_FLAGS_AT) & FDFLAGS_APPEND != 0;
    if record.fill(|host| in_tokio(p1::fd_filestat_get(wasi, host, fd, 0)))? != ERRNO_SUCCESS {
        return Ok(None);
    }
    let size = record.u64_at(FILESTAT_SIZE_AT);
    let start = match offset {
        Some(offset) => offset,
        None if append => size,
        None => {
            if record.fill(|host| p1::fd_tell(wasi, host, fd, 0))? != ERRNO_SUCCESS {
                return Ok(None);
            }
            record.u64_at(0)
        }
    };
    Ok(Some(start.saturating_add(bytes).saturating_sub(size)))
}

// The layouts of WASI preview 1's `fdstat` and `filestat` records.
const FDSTAT_FILETYPE_AT: usize = 0;
const FDSTAT_FLAGS_AT: usize = 2;
const FILESTAT_SIZE_AT: usize = 32;
const FILETYPE_REGULAR_FILE: u8 = 4;
const FDFLAGS_APPEND: u16 = 1;

/// Host memory that wasmtime-wasi writes a record into as if it were the guest's, aligned as
/// its records are. The largest, a `filestat`, takes 64 bytes.
#[repr(C, align(8))]
struct Record([u8; 64]);

impl Record {
    fn fill(
        &mut self,
        call: impl FnOnce(&mut wiggle::GuestMemory<'_>) -> wasmtime::Result<i32>,
    ) -> wasmtime::Result<i32> {
        call(&mut wiggle::GuestMemory::Unshared(&mut self.0))
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("eight bytes"))
    }
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
