//! CPU time of a process from `/proc/<pid>/stat`, in seconds.

use std::process::Command;

/// utime + stime of the server (when a pid was given) and of this process, in clock ticks.
#[derive(Clone, Copy)]
pub struct CpuSnapshot {
    server_ticks: Option<u64>,
    own_ticks: u64,
    ticks_per_sec: f64,
}

impl CpuSnapshot {
    pub fn server_secs(&self, before: &CpuSnapshot) -> Option<f64> {
        let (a, b) = (self.server_ticks?, before.server_ticks?);
        Some(a.saturating_sub(b) as f64 / self.ticks_per_sec)
    }

    pub fn own_secs(&self, before: &CpuSnapshot) -> f64 {
        self.own_ticks.saturating_sub(before.own_ticks) as f64 / self.ticks_per_sec
    }
}

pub fn cpu_snapshot(server_pid: Option<u32>) -> Result<CpuSnapshot, String> {
    let server_ticks = match server_pid {
        Some(pid) => Some(cpu_ticks(&format!("/proc/{pid}/stat"))?),
        None => None,
    };
    Ok(CpuSnapshot {
        server_ticks,
        own_ticks: cpu_ticks("/proc/self/stat")?,
        ticks_per_sec: clock_ticks_per_sec()?,
    })
}

/// Fields 14 and 15 (utime, stime) of a stat line. They are counted after the last ')',
/// because the command name in field 2 may itself contain spaces and parentheses.
fn cpu_ticks(path: &str) -> Result<u64, String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no ')' after the command name"))?;
    // After the name come field 3 (state) onwards, so utime is the 12th of these.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {} is not a tick count", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// `getconf CLK_TCK` (sysconf would need unsafe code, which the crate forbids).
fn clock_ticks_per_sec() -> Result<f64, String> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("cannot run getconf CLK_TCK: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| *t > 0.0)
        .ok_or_else(|| format!("getconf CLK_TCK printed '{}'", text.trim()))
}
