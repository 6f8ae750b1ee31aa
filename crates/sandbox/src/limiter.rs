//! Memory and table limits of one attempt, and the record of whether a limit was hit.
//!
//! The limits hold for the store's memories and tables together: a component is several core
//! instances, each with its own memory or table, and a module may have several memories.
//!
//! A denied growth makes `memory.grow` return -1 (the guest's allocator usually aborts then), so
//! the denial is remembered here: when the attempt then fails, the outcome is
//! [`crate::Outcome::MemoryLimit`] rather than an opaque trap.

use wasmtime::ResourceLimiter;

#[derive(Debug)]
pub(crate) struct AttemptLimiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    memory_bytes: usize,
    table_elements: usize,
    pub(crate) memory_peak_bytes: usize,
    pub(crate) limit_hit: bool,
}

/// Elements of all tables: enough for the indirect-call tables of large programs.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;
/// Core instances: one for a module; a component is its modules, the WASI adapter's and the
/// small shims that tie them together, a handful in practice.
const INSTANCES_MAX: usize = 64;
const TABLES_MAX: usize = 64;
const MEMORIES_MAX: usize = 16;

impl AttemptLimiter {
    pub(crate) fn new(memory_bytes_max: u64) -> Self {
        Self {
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            table_elements_max: TABLE_ELEMENTS_MAX,
            memory_bytes: 0,
            table_elements: 0,
            memory_peak_bytes: 0,
            limit_hit: false,
        }
    }
}

impl ResourceLimiter for AttemptLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_bytes - current.min(self.memory_bytes)).saturating_add(desired);
        let allowed = total <= self.memory_bytes_max && maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.memory_bytes = total;
            self.memory_peak_bytes = self.memory_peak_bytes.max(total);
        } else {
            self.limit_hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.table_elements - current.min(self.table_elements)).saturating_add(desired);
        let allowed = total <= self.table_elements_max && maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.table_elements = total;
        } else {
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
