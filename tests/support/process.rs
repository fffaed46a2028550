//! A child process whose output goes to files, killed on drop, with its logs printed when the
//! test that owns it panics.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout/stderr captured to `<dir>/<name>.out|.err`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Self {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        command
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout log"))
            .stderr(File::create(&stderr).expect("create stderr log"));
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({command:?}): {err}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Panics, with the process's logs, if it has exited.
    pub fn assert_running(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("{} was stopped", self.name);
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited early with {status}\n{}", self.name, self.logs());
        }
    }

    /// Kills the process and waits for it, so its ports are closed when this returns.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: the goal is only that it is gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the process wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The last lines of stdout and stderr, labelled.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (label, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            text.push_str(&format!(
                "---- {} {label} (last {} lines)\n",
                self.name,
                tail.len()
            ));
            for line in tail {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop();
    }
}
