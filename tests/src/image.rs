//! The operator image (the `Dockerfile`'s default stage) built and run with podman on this
//! machine, with no remote image involved.
//!
//! Contract: [`static_binary`] finds the binary `hack/image.sh binary` built and checks that it
//! is static (no program interpreter, no needed shared library). [`Podman`] builds the image
//! from a context holding only that binary, and runs it as a container on the host network
//! (the API server is on 127.0.0.1) with the kubeconfig mounted read-only; a [`Container`] is
//! removed when dropped. podman runs with `runc` and a containers.conf without default ulimits
//! (crun fails on this kind of machine's hybrid cgroups). Errors name the podman command and
//! its stderr.

use crate::repo_root;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where the kubeconfig is mounted in the container.
pub const KUBECONFIG_IN_CONTAINER: &str = "/etc/mall-operator/kubeconfig";

/// Why the image could not be built, inspected or run.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The static binary is not there.
    #[error("no static mall-operator binary at {0}: run `bash hack/image.sh binary` or set MALL_OPERATOR_STATIC_BIN")]
    NoBinary(PathBuf),
    /// The binary is dynamically linked or not an ELF executable.
    #[error("{path} is not a static executable: {why}")]
    NotStatic {
        /// The binary.
        path: PathBuf,
        /// What was found.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// podman could not be started.
    #[error("starting `podman {args}`")]
    Spawn {
        /// Its arguments.
        args: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// podman exited with an error.
    #[error("`podman {args}` failed: {stderr}")]
    Podman {
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { what, path, source }
}

/// The static release binary: `MALL_OPERATOR_STATIC_BIN`, else
/// `<target dir>/x86_64-unknown-linux-gnu/release/mall-operator` next to this test binary's
/// target dir; checked to be static.
pub fn static_binary() -> Result<PathBuf, ImageError> {
    let path = match std::env::var_os("MALL_OPERATOR_STATIC_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().map_err(io("locating", Path::new("the test binary")))?;
            // <target>/debug/deps/<test> → <target>/x86_64-unknown-linux-gnu/release/mall-operator
            let target = exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("."));
            target.join("x86_64-unknown-linux-gnu/release/mall-operator")
        }
    };
    if !path.exists() {
        return Err(ImageError::NoBinary(path));
    }
    let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
    check_static(&bytes).map_err(|why| ImageError::NotStatic { path: path.clone(), why })?;
    Ok(path)
}

/// Ok when `elf` is a 64-bit little-endian ELF with no `PT_INTERP` and no `DT_NEEDED` entry
/// (a static or static-pie executable).
fn check_static(elf: &[u8]) -> Result<(), String> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| {
        elf.get(o..o + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).map(|v| v as usize)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let (phoff, phentsize, phnum) = match (u64_at(0x20), u16_at(0x36), u16_at(0x38)) {
        (Some(o), Some(s), Some(n)) => (o, s, n),
        _ => return Err("truncated ELF header".into()),
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = elf.get(ph..ph + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match kind {
            Some(3) => return Err("it has a program interpreter (PT_INTERP)".into()),
            Some(2) => {
                let (Some(offset), Some(size)) = (u64_at(ph + 8), u64_at(ph + 32)) else {
                    return Err("truncated program header".into());
                };
                let needed = (offset..offset + size).step_by(16).any(|entry| u64_at(entry) == Some(1));
                if needed {
                    return Err("it needs shared libraries (DT_NEEDED)".into());
                }
            }
            Some(_) => {}
            None => return Err("truncated program headers".into()),
        }
    }
    Ok(())
}

/// podman with `runc` and a containers.conf of its own.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// Writes the containers.conf (`[containers]` / `default_ulimits = []`).
    pub fn new() -> Result<Podman, ImageError> {
        let dir = tempfile::tempdir().map_err(io("creating", Path::new("a temporary directory")))?;
        let conf = dir.path().join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").map_err(io("writing", &conf))?;
        Ok(Podman { dir })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", self.dir.path().join("containers.conf")).args(["--runtime", "runc"]).args(args);
        command
    }

    /// Runs `podman args…` to completion: its stdout, trimmed, or its stderr as the error.
    pub fn output(&self, args: &[&str]) -> Result<String, ImageError> {
        let joined = args.join(" ");
        let out = self.command(args).output().map_err(|source| ImageError::Spawn { args: joined.clone(), source })?;
        if !out.status.success() {
            return Err(ImageError::Podman { args: joined, stderr: String::from_utf8_lossy(&out.stderr).into() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Builds the `Dockerfile`'s default stage as `tag` from a context holding only `binary`,
    /// every timestamp set to `epoch` and no cached layer reused; returns the image id.
    pub fn build(&self, binary: &Path, tag: &str, epoch: u64) -> Result<String, ImageError> {
        let context = tempfile::tempdir().map_err(io("creating", Path::new("a build context")))?;
        let copy = context.path().join("mall-operator");
        std::fs::copy(binary, &copy).map_err(io("copying", binary))?;
        let dockerfile = repo_root().join("Dockerfile");
        let (dockerfile, epoch, context) =
            (dockerfile.to_string_lossy(), epoch.to_string(), context.path().to_string_lossy().into_owned());
        let args = ["build", "--no-cache", "--quiet", "--timestamp", &epoch, "-f", &dockerfile, "-t", tag, &context];
        let out = self.output(&args)?;
        Ok(out.lines().last().unwrap_or_default().to_string())
    }

    /// Starts `image` as container `name` on the host network — read-only root, every
    /// capability dropped, no privilege escalation — with `kubeconfig` mounted read-only at
    /// [`KUBECONFIG_IN_CONTAINER`], the environment `env` and the operator flags `args`; its
    /// output goes to `log`.
    pub fn run(
        &self,
        image: &str,
        name: &str,
        kubeconfig: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        log: &Path,
    ) -> Result<Container<'_>, ImageError> {
        let mount = format!("{}:{KUBECONFIG_IN_CONTAINER}:ro", kubeconfig.display());
        let mut run: Vec<String> = ["run", "--rm", "--name", name, "--network", "host", "--read-only"]
            .into_iter()
            .chain(["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--ulimit", "host"])
            .chain(["-v", &mount, "-e", &format!("KUBECONFIG={KUBECONFIG_IN_CONTAINER}")])
            .map(String::from)
            .collect();
        for (key, value) in env {
            run.extend(["-e".to_string(), format!("{key}={value}")]);
        }
        run.push(image.to_string());
        run.extend(args.iter().map(|a| a.to_string()));
        let file = std::fs::File::create(log).map_err(io("creating", log))?;
        let err = file.try_clone().map_err(io("opening", log))?;
        let run: Vec<&str> = run.iter().map(String::as_str).collect();
        let child = self
            .command(&run)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|source| ImageError::Spawn { args: run.join(" "), source })?;
        Ok(Container { podman: self, name: name.to_string(), child })
    }
}

/// A running container, removed (`podman rm -f`) on drop.
pub struct Container<'a> {
    podman: &'a Podman,
    name: String,
    child: Child,
}

impl Container<'_> {
    /// The host pid of the container's first process, once it runs.
    pub fn pid(&self) -> Option<u32> {
        let pid = self.podman.output(&["inspect", "--format", "{{.State.Pid}}", &self.name]).ok()?;
        pid.parse().ok().filter(|p| *p > 0)
    }

    /// Whether `podman run` has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.podman.output(&["rm", "-f", "-t", "5", &self.name]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::check_static;

    #[test]
    fn a_dynamic_executable_is_refused() {
        let ls = std::fs::read("/bin/ls").expect("/bin/ls");
        assert!(check_static(&ls).is_err());
        assert!(check_static(b"#!/bin/sh\n").is_err());
    }
}
