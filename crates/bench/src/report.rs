//! A benchmark's result: the machine it ran on, its parameters, its figures (each with its
//! target and baseline where one applies) and its correctness checks.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: String,
    pub machine: Machine,
    pub parameters: serde_json::Value,
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: u32,
    pub cpu: String,
    pub memory_bytes: u64,
    pub os: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, name)| name.trim().to_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            cpu,
            memory_bytes: memory_kib * 1024,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub better: Better,
    /// The figure we aim for.
    pub target: Option<f64>,
    /// What a peer system measured on the same machine, and which.
    pub baseline: Option<Baseline>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub system: String,
    pub value: f64,
}

impl Figure {
    pub fn new(name: &str, value: f64, unit: &str, better: Better) -> Figure {
        Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            better,
            target: None,
            baseline: None,
        }
    }

    pub fn target(mut self, target: f64) -> Figure {
        self.target = Some(target);
        self
    }

    pub fn baseline(mut self, system: &str, value: Option<f64>) -> Figure {
        self.baseline = value.map(|value| Baseline {
            system: system.to_owned(),
            value,
        });
        self
    }

    /// How many times better than the baseline (above 1 is better), whichever way is better.
    pub fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline.as_ref()?;
        match self.better {
            Better::Higher => Some(self.value / baseline.value),
            Better::Lower => Some(baseline.value / self.value),
        }
    }

    pub fn meets_target(&self) -> Option<bool> {
        let target = self.target?;
        Some(match self.better {
            Better::Higher => self.value >= target,
            Better::Lower => self.value <= target,
        })
    }
}

/// A correctness check of the run: benchmarks never assert speed, only that the work was right.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
}

impl Check {
    pub fn new(what: impl Into<String>, ok: bool) -> Check {
        Check {
            what: what.into(),
            ok,
        }
    }
}

impl Report {
    pub fn all_checks_pass(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} on {} ({} cores, {:.1} GiB)",
            self.benchmark,
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory_bytes as f64 / (1u64 << 30) as f64
        );
        let rows: Vec<[String; 5]> = self
            .figures
            .iter()
            .map(|figure| {
                let target = match (figure.target, figure.meets_target()) {
                    (Some(target), Some(met)) => format!(
                        "{} {} {}",
                        if figure.better == Better::Higher {
                            ">="
                        } else {
                            "<="
                        },
                        number(target),
                        if met { "(met)" } else { "(missed)" }
                    ),
                    _ => String::new(),
                };
                let baseline = figure
                    .baseline
                    .as_ref()
                    .map(|b| format!("{}: {}", b.system, number(b.value)))
                    .unwrap_or_default();
                let ratio = figure
                    .ratio()
                    .map(|ratio| format!("{ratio:.2}x"))
                    .unwrap_or_default();
                [
                    figure.name.clone(),
                    format!("{} {}", number(figure.value), figure.unit),
                    target,
                    baseline,
                    ratio,
                ]
            })
            .collect();
        let header = ["figure", "value", "target", "baseline", "vs baseline"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut line = |cells: [&str; 5]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            let _ = writeln!(text, "  {}", padded.join("  ").trim_end());
        };
        line(header);
        for row in &rows {
            line(row.each_ref().map(String::as_str));
        }
        for check in &self.checks {
            let _ = writeln!(
                text,
                "  [{}] {}",
                if check.ok { "ok" } else { "FAILED" },
                check.what
            );
        }
        text
    }
}

/// A figure for people: thousands separated, few decimals.
fn number(value: f64) -> String {
    if value >= 1000.0 {
        let whole = value.round() as u64;
        let digits = whole.to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_point_the_better_way() {
        let faster =
            Figure::new("tasks/s", 3000.0, "tasks/s", Better::Higher).baseline("ray", Some(1000.0));
        assert_eq!(faster.ratio(), Some(3.0));
        let quicker = Figure::new("p50", 0.5, "ms", Better::Lower)
            .baseline("ray", Some(2.0))
            .target(1.0);
        assert_eq!(quicker.ratio(), Some(4.0));
        assert_eq!(quicker.meets_target(), Some(true));
        assert_eq!(number(15234.4), "15,234");
        assert_eq!(number(2.5), "2.500");
    }
}
