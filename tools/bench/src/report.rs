//! [`Report`]: what a bench prints, as human tables or as one JSON object.

use std::io::Write;

use serde_json::{Value, json};

/// A table of figures: a title, column headers and rows of cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Printed above the table.
    pub title: String,
    /// Column headers.
    pub header: Vec<String>,
    /// Rows, each as long as `header`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with `title` and `header`.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self { title: title.into(), header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table with aligned columns (first column left, the others right).
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        writeln!(out, "{}", self.title)?;
        let line = |cells: &[String], out: &mut dyn Write| -> std::io::Result<()> {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = width.saturating_sub(cell.chars().count());
                if i == 0 {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str("  ");
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            writeln!(out, "  {}", text.trim_end())
        };
        line(&self.header, out)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, out)?;
        for row in &self.rows {
            line(row, out)?;
        }
        Ok(())
    }
}

/// The outcome of one bench: tables for people, a JSON object for machines,
/// and notes (how the servers were run, which targets were met).
#[derive(Debug, Clone)]
pub struct Report {
    /// The workload's name (`ping`, `save`, ...).
    pub workload: String,
    /// The settings the run used, as JSON.
    pub config: Value,
    /// The figures, as JSON.
    pub results: Value,
    /// The figures, as tables.
    pub tables: Vec<Table>,
    /// Targets of the issue checked against the figures.
    pub targets: Vec<Target>,
    /// How the run was done (rate limit raised, argon2 cost lowered, ...).
    pub notes: Vec<String>,
}

/// One target of the benchmark issue and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is required, e.g. `p99 <= 5 ms`.
    pub what: String,
    /// What was measured.
    pub measured: String,
    /// `None` when this run could not tell (e.g. no server-side figures).
    pub met: Option<bool>,
}

impl Target {
    /// A target `what` with its `measured` value and verdict.
    pub fn new(what: impl Into<String>, measured: impl Into<String>, met: Option<bool>) -> Self {
        Self { what: what.into(), measured: measured.into(), met }
    }
}

impl Report {
    /// The whole report as one JSON object.
    pub fn to_json(&self) -> Value {
        let targets: Vec<Value> =
            self.targets.iter().map(|t| json!({"target": t.what, "measured": t.measured, "met": t.met})).collect();
        json!({
            "workload": self.workload,
            "config": self.config,
            "results": self.results,
            "targets": targets,
            "notes": self.notes,
        })
    }

    /// Writes the tables, the targets and the notes.
    pub fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "portcullis-bench {}", self.workload)?;
        for table in &self.tables {
            writeln!(out)?;
            table.write(out)?;
        }
        if !self.targets.is_empty() {
            let mut table = Table::new("targets (issue 16)", &["target", "measured", "verdict"]);
            for t in &self.targets {
                let verdict = match t.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "n/a",
                };
                table.row(vec![t.what.clone(), t.measured.clone(), verdict.to_owned()]);
            }
            writeln!(out)?;
            table.write(out)?;
        }
        if !self.notes.is_empty() {
            writeln!(out)?;
            for note in &self.notes {
                writeln!(out, "note: {note}")?;
            }
        }
        Ok(())
    }

    /// Writes one line of JSON.
    pub fn write_json(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.to_json())
    }
}

/// A number with thousands separators (`12,345`).
pub fn thousands(n: f64) -> String {
    let rounded = n.round();
    let negative = rounded < 0.0;
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if negative { format!("-{out}") } else { out }
}

/// Microseconds as `123 µs` or `1.23 ms`.
pub fn micros(us: u64) -> String {
    if us < 1000 { format!("{us} µs") } else { format!("{:.2} ms", us as f64 / 1000.0) }
}

/// Bytes as KiB or MiB.
pub fn bytes(b: f64) -> String {
    if b.abs() < 1024.0 * 1024.0 { format!("{:.1} KiB", b / 1024.0) } else { format!("{:.1} MiB", b / 1024.0 / 1024.0) }
}

/// `a / b` as `0.57×`, or `-` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() { "-".to_owned() } else { format!("{:.2}×", a / b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(micros(999), "999 µs");
        assert_eq!(micros(1500), "1.50 ms");
        assert_eq!(ratio(1.0, 2.0), "0.50×");
        assert_eq!(ratio(1.0, 0.0), "-");
    }

    #[test]
    fn tables_align() -> std::io::Result<()> {
        let mut table = Table::new("t", &["metric", "value"]);
        table.row(vec!["requests/s".into(), "1,000".into()]);
        table.row(vec!["p50".into(), "12 µs".into()]);
        let mut out = Vec::new();
        table.write(&mut out)?;
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text, "t\n  metric      value\n  ----------  -----\n  requests/s  1,000\n  p50         12 µs\n");
        Ok(())
    }
}
