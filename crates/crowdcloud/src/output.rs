//! How commands talk to people: logging, tables, progress bars, JSON.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use wire::{JobStatus, TaskCounts};

pub(crate) fn init_logging(daemon: bool, verbose: u8) {
    let level = match (daemon, verbose) {
        (_, 2..) => "trace",
        (_, 1) => "debug",
        (true, 0) => "info",
        (false, 0) => "warn",
    };
    let filter = EnvFilter::try_from_env("CROWDCLOUD_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},h2=warn,hyper=warn,sqlx=warn,wasmtime=warn,cranelift=warn"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A progress bar over a job's tasks; hidden when stderr is not a terminal.
pub(crate) fn job_progress(total: u32) -> ProgressBar {
    let bar = ProgressBar::new(u64::from(total));
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks {msg}",
        )
        .expect("the template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub(crate) fn update_progress(bar: &ProgressBar, status: &JobStatus) {
    bar.set_position(u64::from(status.tasks.ended()));
    bar.set_message(counts_line(&status.tasks));
}

pub(crate) fn counts_line(counts: &TaskCounts) -> String {
    let mut parts = vec![];
    for (label, value) in [
        ("running", counts.running),
        ("pending", counts.pending),
        ("succeeded", counts.succeeded),
        ("failed", counts.failed),
        ("cancelled", counts.cancelled),
    ] {
        if value > 0 {
            parts.push(format!("{value} {label}"));
        }
    }
    parts.join(", ")
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints rows as aligned columns.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}
