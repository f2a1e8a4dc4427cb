use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Result, RunFolderError};

/// An exclusive claim on a run folder: `<dir>/.cxr.lock` ([`crate::names::LOCK`]) holding
/// the owner's pid.
/// Dropping it removes the file. A lock left by a process that no longer exists (a
/// killed run) is taken over; a live owner makes [`RunLock::acquire`] fail.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Claims `dir` for this process.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(crate::names::LOCK);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id())
                        .map_err(|e| RunFolderError::io(&path, e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match owner {
                        Some(pid) if pid_alive(pid) => {
                            return Err(RunFolderError::Locked {
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
                Err(e) => return Err(RunFolderError::io(&path, e)),
            }
        }
        Err(RunFolderError::io(
            &path,
            std::io::Error::other("could not claim the run folder lock"),
        ))
    }
}

impl RunLock {
    /// Removes the temporary files of atomic writes (`.<name>.tmp-<pid>-…`, see
    /// [`crate::AtomicWriter`]) that a killed process left in the locked folder; those of
    /// live processes are kept.
    pub fn remove_stale_temps(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, rest)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-"))
            else {
                continue;
            };
            let Ok(pid) = rest.split('-').next().unwrap_or(rest).parse::<u32>() else {
                continue;
            };
            if !pid_alive(pid) {
                tracing::info!("removing {} left by a killed run", name);
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with this pid exists (Linux: `/proc/<pid>`; elsewhere every
/// recorded owner is assumed alive, so a stale lock must be removed by hand).
fn pid_alive(pid: u32) -> bool {
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
            Err(RunFolderError::Locked { .. })
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

    #[test]
    fn stale_temps_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir
            .path()
            .join(".checkpoint.safetensors.tmp-4194304000-aB3xYz");
        let old_style = dir.path().join(".history.csv.tmp-4194304000");
        let live = dir
            .path()
            .join(format!(".metrics.json.tmp-{}-q1w2e3", std::process::id()));
        let other = dir.path().join("history.csv");
        for p in [&dead, &old_style, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let lock = RunLock::acquire(dir.path()).unwrap();
        lock.remove_stale_temps();
        assert!(!dead.exists() && !old_style.exists());
        assert!(live.exists() && other.exists());
    }
}
