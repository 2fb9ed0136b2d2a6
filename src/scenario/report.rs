//! [`Report`]: the scenario's output: one aligned line per step or check,
//! with the messages of each step below it in `--verbose` mode, and a summary.

use std::io::Write;

use serde_json::Value;

use portcullis_client::ClientError;

use super::{error_json, short_token};

/// Widths of the first three columns of a table of steps: what was sent (or
/// checked), expected, actual. A longer cell pushes the rest of its line right.
pub(crate) type Widths = [usize; 3];

/// Writes the scenario's lines and counts the passed steps.
pub(crate) struct Report<'a> {
    /// Where the lines go.
    out: &'a mut dyn Write,
    /// `--verbose`: keep and print the messages of each step.
    verbose: bool,
    /// Messages of the current step, printed under its line (verbose only).
    trace: Vec<String>,
    /// Column widths of the current table.
    widths: Widths,
    /// Steps or checks reported so far.
    total: usize,
    /// Of them, those that passed.
    passed: usize,
}

impl<'a> Report<'a> {
    /// A report writing to `out`.
    pub(crate) fn new(out: &'a mut dyn Write, verbose: bool) -> Self {
        Self { out, verbose, trace: Vec::new(), widths: [40, 20, 20], total: 0, passed: 0 }
    }

    /// Writes one line as is and flushes it.
    pub(crate) fn line(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    /// Keeps a message line for the current step (verbose only).
    pub(crate) fn trace(&mut self, line: &str) {
        if self.verbose {
            self.trace.push(line.to_owned());
        }
    }

    /// Records a request sent: `-> method params`.
    pub(crate) fn sent(&mut self, method: &str, params: &Value) {
        self.trace(&format!("-> {method} {params}"));
    }

    /// Records a response: `<- result` or `<- error {...}`.
    pub(crate) fn received<T>(&mut self, outcome: &Result<T, ClientError>, to_json: impl Fn(&T) -> Value) {
        if self.verbose {
            let line = match outcome {
                Ok(result) => format!("<- {}", to_json(result)),
                Err(error) => format!("<- {}", error_json(error)),
            };
            self.trace.push(line);
        }
    }

    /// Writes the kept message lines, indented, and forgets them.
    pub(crate) fn flush_trace(&mut self) -> std::io::Result<()> {
        for line in std::mem::take(&mut self.trace) {
            writeln!(self.out, "      {line}")?;
        }
        self.out.flush()
    }

    /// Starts a table: sets the column widths and writes the column titles
    /// (`#`, `first`, `expected`, `actual`, `result`).
    pub(crate) fn header(&mut self, first: &str, widths: Widths) -> std::io::Result<()> {
        self.widths = widths;
        let line = self.row("#", first, "expected", "actual", "result");
        self.line(&line)
    }

    /// One aligned line of the table.
    fn row(&self, number: &str, first: &str, expected: &str, actual: &str, verdict: &str) -> String {
        let [first_width, expected_width, actual_width] = self.widths;
        format!("{number:>2}  {first:<first_width$} {expected:<expected_width$} {actual:<actual_width$} {verdict}")
    }

    /// Writes one step line (number, what was sent, expected, actual,
    /// `ok`/`FAIL`), then the step's messages in verbose mode.
    pub(crate) fn step(
        &mut self,
        number: usize,
        sent: &str,
        expected: &str,
        actual: &str,
        ok: bool,
    ) -> std::io::Result<()> {
        self.total += 1;
        if ok {
            self.passed += 1;
        }
        let verdict = if ok { "ok" } else { "FAIL" };
        let line = self.row(&number.to_string(), sent, expected, actual, verdict);
        self.line(&line)?;
        self.flush_trace()
    }

    /// Writes the summary line (`13/13 steps ok`); `true` when every one passed.
    pub(crate) fn summary(&mut self, what: &str) -> std::io::Result<bool> {
        let all = self.passed == self.total && self.total > 0;
        let line = if all {
            format!("{}/{} {what} ok", self.passed, self.total)
        } else {
            format!("{}/{} {what} ok, {} FAILED", self.passed, self.total, self.total - self.passed)
        };
        self.line(&line)?;
        Ok(all)
    }

    /// `value` with a top-level string `token` shortened to its first
    /// characters, unless verbose (which shows everything whole).
    pub(crate) fn shorten(&self, value: &Value) -> Value {
        let mut value = value.clone();
        if !self.verbose
            && let Some(token) = value.get_mut("token")
            && let Some(text) = token.as_str()
        {
            *token = Value::from(short_token(text));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn step_lines_and_summary() {
        let mut out = Vec::new();
        let mut report = Report::new(&mut out, true);
        report.sent("ping", &json!({}));
        report.received(&Ok::<u64, ClientError>(5), |time| json!({ "server_time_ms": time }));
        report.step(1, "ping", "an answer", "an answer", true).expect("writes to a Vec");
        report.step(2, "ping", "an answer", "timeout", false).expect("writes to a Vec");
        assert!(!report.summary("steps").expect("writes to a Vec"));
        let text = String::from_utf8(out).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(" 1  ping ") && lines[0].ends_with(" ok"), "{text}");
        assert_eq!(lines[1], "      -> ping {}");
        assert_eq!(lines[2], r#"      <- {"server_time_ms":5}"#);
        assert!(lines[3].starts_with(" 2  ping ") && lines[3].ends_with(" FAIL"), "{text}");
        assert_eq!(lines[4], "1/2 steps ok, 1 FAILED");
    }

    #[test]
    fn shortens_tokens_unless_verbose() {
        let token = "ab".repeat(32);
        let mut sink = Vec::new();
        let report = Report::new(&mut sink, false);
        assert_eq!(report.shorten(&json!({"token": token})), json!({"token": "abababab…"}));
        let mut sink = Vec::new();
        let verbose = Report::new(&mut sink, true);
        assert_eq!(verbose.shorten(&json!({"token": token})), json!({"token": token}));
    }
}
