//! CPU time and resident memory of a process, read from Linux's `/proc`.

use std::sync::OnceLock;
use std::time::Duration;

/// A process to read: a child by its id, or this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// This process (`/proc/self`).
    This,
    /// Another process.
    Id(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::This => "/proc/self".to_owned(),
            Self::Id(pid) => format!("/proc/{pid}"),
        }
    }
}

/// User + system CPU time of every thread of `pid`, alive or exited
/// (`utime` + `stime` of `/proc/PID/stat`, in clock ticks of 10 ms on Linux).
pub fn cpu_time(pid: Pid) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir()))?;
    let ticks = parse_stat_cpu_ticks(&stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc/PID/stat"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: Pid) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir()))?;
    parse_status_rss_kib(&status)
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no VmRSS in /proc/PID/status"))
}

/// The 1-minute load average of the machine (`/proc/loadavg`): how many
/// processes were running or waiting for a core, on average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3; utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `sysconf(_SC_CLK_TCK)` as `getconf CLK_TCK` prints it; 100 (Linux's
/// value everywhere in practice) when it cannot be run.
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(290));
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tportcullis\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t5\n";
        assert_eq!(parse_status_rss_kib(status), Some(4321));
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(rss_bytes(Pid::This).is_ok_and(|rss| rss > 0));
        assert!(cpu_time(Pid::This).is_ok());
    }
}
