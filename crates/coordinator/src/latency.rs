//! How long the coordinator takes to answer one kind of request, as a Prometheus histogram:
//! counts per bucket of seconds, the sum and the count, rendered in the text format beside the
//! gauges of `/metrics`.
//!
//! Measured inside the coordinator (lock waits and commit waits included, the network and the
//! client not), so a benchmark whose clients share the machine can tell the coordinator's
//! latency from its own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from 0.1 ms, where a heartbeat is handled, to a
/// second, past which everything counts in the last one.
const BUCKET_BOUNDS_S: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket, the last for those above every bound.
    counts: [AtomicU64; BUCKET_BOUNDS_S.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKET_BOUNDS_S
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKET_BOUNDS_S.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Appends the histogram as `name`, in the Prometheus text format, to `text`.
    pub(crate) fn render(&self, name: &str, help: &str, text: &mut String) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match BUCKET_BOUNDS_S.get(bucket) {
                Some(bound) => writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {cumulative}"),
                None => writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
            }
            .expect("writing to a string");
        }
        let sum_s = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(text, "{name}_sum {sum_s}\n{name}_count {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_count_in_the_first_bucket_they_fit_and_render_cumulatively() {
        let histogram = Histogram::default();
        for micros in [50, 100, 900, 3_000, 2_000_000] {
            histogram.observe(Duration::from_micros(micros));
        }
        let mut text = String::new();
        histogram.render("h", "help", &mut text);
        for line in [
            "# TYPE h histogram",
            "h_bucket{le=\"0.0001\"} 2",
            "h_bucket{le=\"0.001\"} 3",
            "h_bucket{le=\"0.005\"} 4",
            "h_bucket{le=\"1\"} 4",
            "h_bucket{le=\"+Inf\"} 5",
            "h_count 5",
            "h_sum 2.00405",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
