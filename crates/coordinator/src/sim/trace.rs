//! What a run did, line by line: every command, reply, write and fault. Each line is folded into
//! a digest (so two runs of one seed can be compared whole), and in `Tail` mode the last lines
//! are kept and printed if the run fails, so a failing seed can be read step by step.

use std::collections::VecDeque;

/// How much of the trace a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TraceMode {
    /// Nothing: the fastest, for running many seeds.
    Off,
    /// The digest of every line.
    Digest,
    /// The digest, and the last [`TAIL_LINES`] lines, printed when the run panics.
    Tail,
}

/// Lines a failing run prints: enough to follow the last simulated minute or so.
const TAIL_LINES: usize = 20_000;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub(super) struct Trace {
    mode: TraceMode,
    digest: u64,
    lines: u64,
    tail: VecDeque<String>,
}

impl Trace {
    pub(super) fn new(mode: TraceMode) -> Self {
        Self {
            mode,
            digest: FNV_OFFSET,
            lines: 0,
            tail: VecDeque::new(),
        }
    }

    /// Records the line `line` makes, at `now_ms`; `line` is not called when the trace is off.
    pub(super) fn record(&mut self, now_ms: u64, line: impl FnOnce() -> String) {
        if self.mode == TraceMode::Off {
            return;
        }
        let line = format!("{now_ms} {}", line());
        for byte in line.bytes().chain([b'\n']) {
            self.digest = (self.digest ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self.lines += 1;
        if self.mode == TraceMode::Tail {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }

    pub(super) fn digest(&self) -> u64 {
        self.digest
    }

    pub(super) fn lines(&self) -> u64 {
        self.lines
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.tail.is_empty() {
            eprintln!("--- the last {} lines of the trace ---", self.tail.len());
            for line in &self.tail {
                eprintln!("{line}");
            }
            eprintln!("--- end of the trace ---");
        }
    }
}
