use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Result, TrainError};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is
/// written, flushed to disk and renamed over `path`, so readers see the old file or
/// the new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_then(path, bytes, || {})
}

/// [`write_atomic`] calling `midway` after the first half of the temporary file is
/// written (the crash-safety tests stop a run there).
pub(crate) fn write_atomic_then(path: &Path, bytes: &[u8], midway: impl FnOnce()) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        f.write_all(head)?;
        f.flush()?;
        midway();
        f.write_all(tail)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

/// Creates `dir` (and parents) and checks that a file can be written in it, so an
/// unwritable output folder fails before any training time is spent.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let probe = dir.join(format!(".cxr-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| TrainError::io(dir, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn missing_parent_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/a.json");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("a.json"), "{e}");
    }
}
