//! Spawned processes that cannot outlive their owner.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process (and everything it forks), stopped on drop: SIGTERM, then
/// SIGKILL to its whole process group.
///
/// The child leads a new process group so that forked workers (nginx) and
/// exec chains (pyenv shims) die with it.
pub struct Guarded {
    child: Child,
    name: String,
    exit: Option<ExitStatus>,
}

impl Guarded {
    pub fn spawn(command: &mut Command, name: &str) -> Result<Self> {
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {name}: {command:?}"))?;
        Ok(Self {
            child,
            name: name.to_owned(),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(self.pid() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending signal {signal} to {}", self.name));
        }
        Ok(())
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().context("polling child")?;
        }
        Ok(self.exit)
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SIGTERM first: an nginx master then reaps its own workers instead of
        // leaving zombies to init; the group SIGKILL catches whatever remains.
        if matches!(self.try_exit(), Ok(None)) && self.signal(libc::SIGTERM).is_ok() {
            let _ = self.wait_timeout(Duration::from_secs(3));
        }
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(-(self.pid() as libc::pid_t), libc::SIGKILL) };
        if self.exit.is_none() {
            let _ = self.child.wait();
        }
    }
}
