use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Result, TrainError};

/// An exclusive claim on a run folder: `<dir>/.cxr.lock` holding the owner's pid.
/// Dropping it removes the file. A lock left by a process that no longer exists (a
/// killed run) is taken over; a live owner makes [`RunLock::acquire`] fail.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Claims `dir` for this process.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(".cxr.lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).map_err(|e| TrainError::io(&path, e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match owner {
                        Some(pid) if pid_alive(pid) => {
                            return Err(TrainError::Locked {
                                dir: dir.to_path_buf(),
                                pid,
                            });
                        }
                        _ => {
                            tracing::warn!("removing a stale lock {}", path.display());
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(TrainError::io(&path, e)),
            }
        }
        Err(TrainError::io(
            &path,
            std::io::Error::other("could not claim the run folder lock"),
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with this pid exists (Linux: `/proc/<pid>`; elsewhere every
/// recorded owner is assumed alive, so a stale lock must be removed by hand).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_is_refused_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            RunLock::acquire(dir.path()),
            Err(TrainError::Locked { .. })
        ));
        drop(a);
        let _b = RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // pid far above Linux's pid_max default: no such process
        std::fs::write(dir.path().join(".cxr.lock"), "4194304000\n").unwrap();
        let _a = RunLock::acquire(dir.path()).unwrap();
    }
}
