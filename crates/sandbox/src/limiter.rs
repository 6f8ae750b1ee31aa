//! Memory and table limits of one instance, and the record of whether a limit was hit.
//!
//! A denied growth makes `memory.grow` return -1 (the guest's allocator usually aborts then), so
//! the denial is remembered here: when the attempt then fails, the outcome is
//! [`crate::Outcome::MemoryLimit`] rather than an opaque trap.

use wasmtime::ResourceLimiter;

#[derive(Debug)]
pub(crate) struct AttemptLimiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    pub(crate) memory_peak_bytes: usize,
    pub(crate) limit_hit: bool,
}

/// Elements per table: enough for the indirect-call tables of large programs.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;
const INSTANCES_MAX: usize = 1;
const TABLES_MAX: usize = 16;
const MEMORIES_MAX: usize = 1;

impl AttemptLimiter {
    pub(crate) fn new(memory_bytes_max: u64) -> Self {
        Self {
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            table_elements_max: TABLE_ELEMENTS_MAX,
            memory_peak_bytes: 0,
            limit_hit: false,
        }
    }
}

impl ResourceLimiter for AttemptLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes_max && maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.memory_peak_bytes = self.memory_peak_bytes.max(desired);
        } else {
            self.limit_hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed =
            desired <= self.table_elements_max && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.limit_hit = true;
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        INSTANCES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }
}
