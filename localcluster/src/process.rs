//! Child processes of a local cluster.
//!
//! Contract: every child is spawned from one long-lived "spawner" thread (so that
//! `PR_SET_PDEATHSIG`, which fires when the *spawning thread* exits, only fires when the whole
//! test process dies), with `SIGKILL` as its parent-death signal, in the process group given by
//! the caller (`None` starts a new group led by the child), with stdout and stderr appended to a
//! log file. A [`Proc`] is never dropped while its process runs unreaped: [`Proc`]'s `Drop`
//! sends `SIGKILL` and reaps it. Signals are only ever sent to pids that this module has not yet
//! reaped, so they can never reach a recycled pid.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Errors of spawning and stopping child processes.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("cannot start {component} ({program})")]
    Spawn {
        /// The component (etcd, kube-apiserver, ...).
        component: String,
        /// The program path.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spawner thread is gone (it only ends if it panicked).
    #[error("the process spawner thread is not running")]
    Spawner,
    /// Waiting for the process failed.
    #[error("cannot wait for {component}")]
    Wait {
        /// The component.
        component: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> Result<mpsc::Sender<SpawnJob>, ProcessError> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        // The thread lives as long as the process: it is never joined.
        let spawned = std::thread::Builder::new().name("localcluster-spawner".into()).spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the localcluster spawner thread");
        }
        Mutex::new(tx)
    });
    sender.lock().map(|s| s.clone()).map_err(|_| ProcessError::Spawner)
}

/// A running (or exited but not yet reaped) child process.
#[derive(Debug)]
pub(crate) struct Proc {
    component: String,
    child: Option<Child>,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `program args` with its output appended to `log`, in process group `pgid`
    /// (`None`: a new group led by the child).
    pub(crate) fn spawn(
        component: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        pgid: Option<i32>,
    ) -> Result<Self, ProcessError> {
        Self::spawn_with_env(component, program, args, &[], log, pgid)
    }

    /// Like [`Proc::spawn`], with `env` added to (or replacing entries of) the inherited
    /// environment.
    pub(crate) fn spawn_with_env(
        component: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
        pgid: Option<i32>,
    ) -> Result<Self, ProcessError> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| ProcessError::Log { path: log.to_path_buf(), source })
        };
        let out = open()?;
        let err = open()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(pgid.unwrap_or(0));
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec; prctl, getppid and _exit are
        // async-signal-safe and it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                // The parent may have died before prctl: then nobody would kill us.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()?.send((command, tx)).map_err(|_| ProcessError::Spawner)?;
        let child = rx.recv().map_err(|_| ProcessError::Spawner)?.map_err(|source| ProcessError::Spawn {
            component: component.to_string(),
            program: program.to_path_buf(),
            source,
        })?;
        tracing::debug!(component, pid = child.id(), "started");
        Ok(Proc { component: component.to_string(), child: Some(child), log: log.to_path_buf(), exit: None })
    }

    /// The component name.
    pub(crate) fn component(&self) -> &str {
        &self.component
    }

    /// The pid, while the process is not reaped.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited (reaping it).
    pub(crate) fn try_exit(&mut self) -> Option<ExitStatus> {
        if let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    self.child = None;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(component = %self.component, error = %e, "try_wait"),
            }
        }
        self.exit
    }

    /// Sends `signal` if the process is not reaped yet.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Sends `SIGTERM`, waits up to `timeout`, then sends `SIGKILL` and reaps the process.
    /// Returns whether the process exited within the timeout.
    pub(crate) async fn stop(&mut self, timeout: Duration) -> Result<bool, ProcessError> {
        if self.try_exit().is_some() {
            return Ok(true);
        }
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.try_exit().is_some() {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(component = %self.component, ?timeout, "did not stop in time; SIGKILL");
        self.kill_and_reap()?;
        Ok(false)
    }

    /// Sends `SIGKILL` and reaps the process (a blocking wait of a few milliseconds).
    pub(crate) fn kill_and_reap(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let status =
                child.wait().map_err(|source| ProcessError::Wait { component: self.component.clone(), source })?;
            self.exit = Some(status);
        }
        Ok(())
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.kill_and_reap() {
            tracing::warn!(error = %e, "cannot reap child");
        }
    }
}

/// Sends `SIGKILL` to a whole process group whose leader is still unreaped, then to each of
/// `procs` (in case one left the group), and reaps them all.
pub(crate) fn kill_all(leader_pgid: Option<i32>, procs: &mut [Proc]) {
    if let Some(pgid) = leader_pgid {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    for p in procs.iter() {
        p.signal(Signal::SIGKILL);
    }
    for p in procs.iter_mut() {
        if let Err(e) = p.kill_and_reap() {
            tracing::warn!(error = %e, "cannot reap child");
        }
    }
}

/// The last `lines` lines of the file at `path` (at most the last 64 KiB are read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1, never the same twice in one process (bound then released:
/// another process may still take it before the component binds it).
pub(crate) fn free_port() -> std::io::Result<u16> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no fresh free port after 100 attempts"))
}
