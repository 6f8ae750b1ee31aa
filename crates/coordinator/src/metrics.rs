//! What the coordinator measures: Prometheus counters and histograms (through
//! prometheus-client), served at `/metrics`, and the last hour of them sampled into a bounded
//! history for the web app's charts (`/v1/metrics/history`).
//!
//! Counts of tasks, attempts and fuel follow the store's writes (`Metrics::follow`), the one
//! stream every change of the pool passes through, so they need no hook in the pool's rules.
//! Latencies are measured inside the coordinator: lock and commit waits included, the network
//! and the client not, so a benchmark whose clients share the machine can tell the
//! coordinator's latency from its own. Counters start at zero with the process, as Prometheus
//! expects of counters.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use store::{AttemptEndState, Write};
use wire::{MetricsHistory, MetricsSample, TaskState};

/// How often the history takes a sample.
pub(crate) const SAMPLE_EVERY_MS: u64 = 10_000;
/// Samples kept: one hour of them.
pub(crate) const SAMPLES_MAX: usize = 360;

/// Upper bounds of the latency buckets, in seconds: from 0.1 ms, where a heartbeat is handled,
/// to a second, past which everything counts in the last one.
const LATENCY_BOUNDS_S: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus users write them
enum TaskEnd {
    succeeded,
    failed,
    cancelled,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    state: TaskEnd,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus users write them
enum AttemptEnd {
    succeeded,
    failed,
    expired,
    released,
    cancelled,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    end: AttemptEnd,
}

/// The coordinator's figures. Cheap to update from any thread: every metric is atomic.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    tasks_ended: Family<TaskLabels, Counter>,
    attempts_ended: Family<AttemptLabels, Counter>,
    fuel_used: Counter,
    pub(crate) heartbeats: Counter,
    pub(crate) heartbeat_seconds: Histogram,
    pub(crate) lease_seconds: Histogram,
    pub(crate) report_seconds: Histogram,
    pub(crate) commit_seconds: Histogram,
    pub(crate) blob_bytes_in: Counter,
    pub(crate) blob_bytes_out: Counter,
    pub(crate) gauges: Gauges,
    history: Mutex<History>,
}

/// Levels read off the pool when `/metrics` is asked or a sample is taken.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) nodes_online: Gauge,
    pub(crate) tasks_pending: Gauge,
    pub(crate) attempts_running: Gauge,
    pub(crate) lease_requests_parked: Gauge,
    pub(crate) store_writes_queued: Gauge,
}

fn latency() -> Histogram {
    Histogram::new(LATENCY_BOUNDS_S)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("crowdcloud"),
            tasks_ended: Family::default(),
            attempts_ended: Family::default(),
            fuel_used: Counter::default(),
            heartbeats: Counter::default(),
            heartbeat_seconds: latency(),
            lease_seconds: latency(),
            report_seconds: latency(),
            commit_seconds: latency(),
            blob_bytes_in: Counter::default(),
            blob_bytes_out: Counter::default(),
            gauges: Gauges::default(),
            history: Mutex::new(History::default()),
        };
        metrics.register();
        metrics
    }
}

impl Metrics {
    fn register(&mut self) {
        self.register_counts();
        self.register_latencies();
        self.register_levels();
    }

    fn register_counts(&mut self) {
        let registry = &mut self.registry;
        let counters: [(&str, &str, &Counter); 4] = [
            (
                "fuel_used",
                "Fuel the ended attempts used.",
                &self.fuel_used,
            ),
            ("heartbeats", "Heartbeats answered.", &self.heartbeats),
            (
                "blob_bytes_in",
                "Bytes of blobs stored from uploads.",
                &self.blob_bytes_in,
            ),
            (
                "blob_bytes_out",
                "Bytes of blobs sent to readers.",
                &self.blob_bytes_out,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "tasks_ended",
            "Tasks that ended, by their end.",
            self.tasks_ended.clone(),
        );
        registry.register(
            "attempts_ended",
            "Attempts that ended, by how: expired attempts were lost with their node.",
            self.attempts_ended.clone(),
        );
    }

    fn register_latencies(&mut self) {
        let histograms: [(&str, &str, &Histogram); 4] = [
            (
                "heartbeat_seconds",
                "How long heartbeats took to answer.",
                &self.heartbeat_seconds,
            ),
            (
                "lease_seconds",
                "How long lease requests that found work took to answer.",
                &self.lease_seconds,
            ),
            (
                "report_seconds",
                "How long attempts' reports took to answer.",
                &self.report_seconds,
            ),
            (
                "commit_seconds",
                "How long requests waited for their changes to be durable.",
                &self.commit_seconds,
            ),
        ];
        for (name, help, histogram) in histograms {
            self.registry.register(name, help, histogram.clone());
        }
    }

    fn register_levels(&mut self) {
        let gauges: [(&str, &str, &Gauge); 5] = [
            (
                "nodes_online",
                "Nodes whose lease is current.",
                &self.gauges.nodes_online,
            ),
            (
                "tasks_pending",
                "Tasks waiting for a node.",
                &self.gauges.tasks_pending,
            ),
            (
                "attempts_running",
                "Attempts held by nodes.",
                &self.gauges.attempts_running,
            ),
            (
                "lease_requests_parked",
                "Lease requests of nodes waiting for work.",
                &self.gauges.lease_requests_parked,
            ),
            (
                "store_writes_queued",
                "Writes queued to the state store, not yet committed.",
                &self.gauges.store_writes_queued,
            ),
        ];
        for (name, help, gauge) in gauges {
            self.registry.register(name, help, gauge.clone());
        }
    }

    /// Counts what the writes of one change record: attempts and tasks that ended, and fuel.
    pub(crate) fn follow(&self, writes: &[Write]) {
        for write in writes {
            match write {
                Write::EndAttempts(ends) => {
                    for end in ends {
                        self.attempt_ended(end);
                    }
                }
                Write::EndTasks(verdicts) => {
                    for verdict in verdicts {
                        self.task_ended(verdict.state);
                    }
                }
                _ => {}
            }
        }
    }

    fn attempt_ended(&self, end: &store::AttemptEnd) {
        let how = match end.state {
            AttemptEndState::Succeeded => AttemptEnd::succeeded,
            AttemptEndState::Failed => AttemptEnd::failed,
            AttemptEndState::Expired => AttemptEnd::expired,
            AttemptEndState::Released => AttemptEnd::released,
            AttemptEndState::Cancelled => AttemptEnd::cancelled,
        };
        self.attempts_ended
            .get_or_create(&AttemptLabels { end: how })
            .inc();
        if let Some(usage) = &end.usage {
            self.fuel_used.inc_by(usage.fuel_used);
        }
        if let Some(task_end) = &end.task_end {
            self.task_ended(task_end.state);
        }
    }

    fn task_ended(&self, state: TaskState) {
        let state = match state {
            TaskState::Succeeded => TaskEnd::succeeded,
            TaskState::Failed => TaskEnd::failed,
            TaskState::Cancelled => TaskEnd::cancelled,
            TaskState::Pending | TaskState::Running => return,
        };
        self.tasks_ended.get_or_create(&TaskLabels { state }).inc();
    }

    /// Every metric in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        text.push_str("# EOF\n");
        text
    }

    fn totals(&self) -> Totals {
        let tasks = [TaskEnd::succeeded, TaskEnd::failed, TaskEnd::cancelled]
            .into_iter()
            .map(|state| self.tasks_ended.get_or_create(&TaskLabels { state }).get())
            .sum();
        let attempts_lost = self
            .attempts_ended
            .get_or_create(&AttemptLabels {
                end: AttemptEnd::expired,
            })
            .get();
        Totals {
            tasks_ended: tasks,
            attempts_lost,
            fuel_used: self.fuel_used.get(),
        }
    }

    /// Takes a sample at `at_ms` from the counters and the gauges as they were last set.
    pub(crate) fn sample(&self, at_ms: u64) {
        let totals = self.totals();
        let gauge = |gauge: &Gauge| u64::try_from(gauge.get()).unwrap_or(0);
        let mut history = self.history.lock();
        let since = history.last.unwrap_or(totals);
        history.push(MetricsSample {
            at_ms,
            tasks_finished: totals.tasks_ended.saturating_sub(since.tasks_ended),
            tasks_queued: gauge(&self.gauges.tasks_pending),
            nodes_online: gauge(&self.gauges.nodes_online),
            fuel_used: totals.fuel_used.saturating_sub(since.fuel_used),
            attempts_lost: totals.attempts_lost.saturating_sub(since.attempts_lost),
        });
        history.last = Some(totals);
    }

    /// The samples of the last hour, oldest first.
    pub(crate) fn history(&self) -> MetricsHistory {
        MetricsHistory {
            interval_ms: SAMPLE_EVERY_MS,
            samples: self.history.lock().samples.iter().cloned().collect(),
        }
    }

    /// Observes how long something took on one of the latency histograms.
    pub(crate) fn observe(histogram: &Histogram, elapsed: Duration) {
        histogram.observe(elapsed.as_secs_f64());
    }
}

#[derive(Debug, Clone, Copy)]
struct Totals {
    tasks_ended: u64,
    attempts_lost: u64,
    fuel_used: u64,
}

#[derive(Debug, Default)]
struct History {
    samples: VecDeque<MetricsSample>,
    /// The totals at the last sample, which the next one counts from.
    last: Option<Totals>,
}

impl History {
    fn push(&mut self, sample: MetricsSample) {
        if self.samples.len() == SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{AttemptEnd as EndRow, TaskEnd as TaskEndRow};
    use wire::{AttemptId, JobId, Outcome, Usage};

    fn end(state: AttemptEndState, task: Option<TaskState>, fuel: u64) -> EndRow {
        EndRow {
            ran_on: None,
            attempt_id: AttemptId(1),
            job_id: JobId(1),
            task_index: 0,
            state,
            at_ms: 0,
            outcome: Some(Outcome::Succeeded),
            usage: Some(Usage {
                fuel_used: fuel,
                ..Usage::default()
            }),
            stdout: None,
            stderr: None,
            outputs: Vec::new(),
            task_end: task.map(|state| TaskEndRow {
                state,
                outcome: Outcome::Succeeded,
            }),
        }
    }

    #[test]
    fn ended_attempts_count_by_how_and_samples_count_what_happened_since_the_last() {
        let metrics = Metrics::default();
        metrics.sample(0);
        metrics.follow(&[Write::EndAttempts(vec![
            end(AttemptEndState::Succeeded, Some(TaskState::Succeeded), 700),
            end(AttemptEndState::Expired, None, 0),
            end(AttemptEndState::Expired, None, 0),
        ])]);
        metrics.gauges.tasks_pending.set(1);
        metrics.sample(10_000);
        metrics.follow(&[Write::EndAttempts(vec![end(
            AttemptEndState::Failed,
            Some(TaskState::Failed),
            50,
        )])]);
        metrics.sample(20_000);
        let history = metrics.history();
        let figures: Vec<_> = history
            .samples
            .iter()
            .map(|s| {
                (
                    s.at_ms,
                    s.tasks_finished,
                    s.attempts_lost,
                    s.fuel_used,
                    s.tasks_queued,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [
                (0, 0, 0, 0, 0),
                (10_000, 1, 2, 700, 1),
                (20_000, 1, 0, 50, 1)
            ]
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"crowdcloud_attempts_ended_total{end="expired"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"crowdcloud_tasks_ended_total{state="failed"} 1"#),
            "{text}"
        );
        assert!(text.contains("crowdcloud_fuel_used_total 750"), "{text}");
    }

    #[test]
    fn the_history_keeps_one_hour() {
        let metrics = Metrics::default();
        for at in 0..(SAMPLES_MAX as u64 + 20) {
            metrics.sample(at * SAMPLE_EVERY_MS);
        }
        let samples = metrics.history().samples;
        assert_eq!(samples.len(), SAMPLES_MAX);
        assert_eq!(samples[0].at_ms, 20 * SAMPLE_EVERY_MS);
    }
}
