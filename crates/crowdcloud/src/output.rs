//! How commands talk to people: logging, tables, progress bars, JSON.
//!
//! Text that came from a node or another requester (names, reasons, outcome messages, output
//! paths) goes through [`visible`] before it reaches a terminal, so escape sequences in it are
//! shown, not obeyed. Tables take cells of any length.

use std::borrow::Cow;
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

/// `text` as it may reach a terminal: control characters (ESC, BEL, C1 controls such as CSI,
/// newlines) written out as Rust escapes such as `\u{1b}` or `\n`; everything else, including
/// any other Unicode, kept as it is.
pub(crate) fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    Cow::Owned(shown)
}

/// Prints rows as aligned columns, every cell through [`visible`].
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

/// The lines of [`print_table`].
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<Cow<'_, str>> = header.iter().map(|cell| visible(cell)).collect();
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| visible(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for cells in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            // Padded by hand: a format width (`{:<width$}`) panics past 65,535.
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_and_other_text_kept() {
        assert!(matches!(visible("plain ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(
            visible("\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31mred\nnext"),
            "\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{9b}31mred\\nnext"
        );
    }

    #[test]
    fn a_table_takes_cells_of_any_length_and_escapes_them() {
        let huge = format!("\u{1b}]0;x\u{7}{}\u{1b}[2J", "é".repeat(70_000));
        let rows = vec![
            vec!["n-1".to_owned(), huge, "online".to_owned()],
            vec!["n-2".to_owned(), "short".to_owned(), "paused".to_owned()],
        ];
        let text = table(&["NODE", "NAME", "STATE"], &rows);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains(&"é".repeat(70_000)));
        assert!(lines[1].starts_with("n-1   \\u{1b}]0;x\\u{7}é"));
        let state_column = |line: &str| line.chars().count() - "paused".len();
        assert_eq!(state_column(lines[2]), state_column(lines[1]));
        assert!(lines[0].starts_with("NODE  NAME"));
    }
}
