use std::io::Read;
use std::path::{Path, PathBuf};

use md5::Digest as _;

use crate::{DataError, Result};

/// File name of PneumoniaMNIST in MedMNIST v2.
pub const PNEUMONIAMNIST_FILE: &str = "pneumoniamnist.npz";
/// Official download address (Zenodo record 6496656).
pub const PNEUMONIAMNIST_URL: &str =
    "https://zenodo.org/record/6496656/files/pneumoniamnist.npz?download=1";
/// md5 of the official file.
pub const PNEUMONIAMNIST_MD5: &str = "28209eda62fecd6e6a2d98b1501bb15f";

fn hash_file<D: md5::Digest>(path: &Path, mut hasher: D) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex md5 of a file.
pub fn md5_file(path: &Path) -> Result<String> {
    hash_file(path, md5::Md5::new())
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    hash_file(path, sha2::Sha256::new())
}

/// Finds a data file: an explicit path, else a folder from the environment, else the
/// project's `data/` folder, else (if allowed) the official download.
#[derive(Debug, Clone)]
pub struct DataLocator {
    /// `--data PATH`: a file, or a folder holding the file.
    pub explicit: Option<PathBuf>,
    /// The folder named by `CXR_DATA_DIR` (the caller reads the variable).
    pub env_dir: Option<PathBuf>,
    /// The project's data folder (`data/`); downloads land here.
    pub default_dir: PathBuf,
    /// Whether to download when the file is found nowhere.
    pub allow_download: bool,
    /// Download address.
    pub url: String,
    /// Expected md5 of the download.
    pub md5: String,
}

impl Default for DataLocator {
    /// PneumoniaMNIST from Zenodo into `data/`, no explicit path, no environment.
    fn default() -> Self {
        Self {
            explicit: None,
            env_dir: None,
            default_dir: PathBuf::from("data"),
            allow_download: true,
            url: PNEUMONIAMNIST_URL.into(),
            md5: PNEUMONIAMNIST_MD5.into(),
        }
    }
}

const HINT: &str = "supply the file with `--data PATH` or `CXR_DATA_DIR=DIR` (a folder holding it), \
or put it in data/; online, cxr downloads the official MedMNIST file";

impl DataLocator {
    /// The path of `file_name` (e.g. [`PNEUMONIAMNIST_FILE`]), looked for in order:
    ///
    /// 1. `explicit` (`--data PATH`): the file itself, or a folder holding
    ///    `file_name`. If given but not found, that is an error at once: it is never
    ///    replaced by another file.
    /// 2. `env_dir/file_name` (`CXR_DATA_DIR`).
    /// 3. `default_dir/file_name` (`data/`).
    /// 4. If `allow_download` (and the `download` feature is on): [`Self::download`]
    ///    into `default_dir`.
    ///
    /// A local file is used as found: its md5 is not checked (only a download's is).
    /// When nothing is found and the download is off or fails, the error is
    /// [`DataError::NotFound`] listing every path tried and how to supply the file
    /// (with the download's own error in its hint); an md5 mismatch is
    /// [`DataError::Checksum`].
    pub fn locate(&self, file_name: &str) -> Result<PathBuf> {
        if let Some(p) = &self.explicit {
            let candidate = if p.is_dir() {
                p.join(file_name)
            } else {
                p.clone()
            };
            if candidate.is_file() {
                return Ok(candidate);
            }
            let hint = if p.is_dir() {
                format!(
                    "the folder given with --data ({}) does not hold {file_name}; \
                     pass the file itself with `--data PATH`",
                    p.display()
                )
            } else {
                "the path given with --data does not exist; pass an existing file or a \
                 folder holding it (or use CXR_DATA_DIR=DIR)"
                    .to_string()
            };
            return Err(DataError::NotFound {
                file: file_name.into(),
                tried: vec![candidate],
                hint,
            });
        }
        let mut tried = Vec::new();
        for dir in self
            .env_dir
            .iter()
            .chain(std::iter::once(&self.default_dir))
        {
            let candidate = dir.join(file_name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
        if !self.allow_download {
            return Err(DataError::NotFound {
                file: file_name.into(),
                tried,
                hint: format!("downloads are off; {HINT}"),
            });
        }
        let target = self.default_dir.join(file_name);
        match self.download(&target) {
            Ok(()) => Ok(target),
            Err(e @ DataError::Checksum { .. }) => Err(e),
            Err(e) => Err(DataError::NotFound {
                file: file_name.into(),
                tried,
                hint: format!("the download failed ({e}); {HINT}"),
            }),
        }
    }

    /// Downloads `self.url` to `target`: the body is written to a temporary
    /// `<file name>.<process id>.part` in the same folder, its md5 is checked against
    /// `self.md5`, and only then is it renamed (atomically, same file system) to
    /// `target`. On any failure the temporary file is removed and `target` is left
    /// untouched. Errors: [`DataError::Download`] (connection, HTTP status, transfer),
    /// [`DataError::Checksum`] (md5 mismatch), [`DataError::Io`] (local files).
    pub fn download(&self, target: &Path) -> Result<()> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| DataError::Invalid {
                name: "download target".into(),
                reason: format!("{} has no file name", target.display()),
            })?;
        let part = target.with_file_name(format!("{name}.{}.part", std::process::id()));
        let result = self.download_to(&part).and_then(|()| {
            let actual = md5_file(&part)?;
            if !actual.eq_ignore_ascii_case(&self.md5) {
                return Err(DataError::Checksum {
                    path: target.to_path_buf(),
                    expected: self.md5.clone(),
                    actual,
                });
            }
            std::fs::rename(&part, target).map_err(|e| DataError::io(target, e))
        });
        if result.is_err() {
            // The file may never have been created; nothing else to do on failure.
            let _ = std::fs::remove_file(&part);
        } else {
            tracing::info!(file = %target.display(), md5 = %self.md5, "download verified");
        }
        result
    }

    #[cfg(feature = "download")]
    fn download_to(&self, part: &Path) -> Result<()> {
        use std::time::Duration;
        let fail = |reason: String| DataError::Download {
            url: self.url.clone(),
            reason,
        };
        if let Some(dir) = part.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        tracing::info!("downloading {} to {}", self.url, part.display());
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let mut resp = agent
            .get(&self.url)
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let mut reader = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOWNLOAD_BYTES)
            .reader();
        let mut file = std::fs::File::create(part).map_err(|e| DataError::io(part, e))?;
        std::io::copy(&mut reader, &mut file)
            .map_err(|e| fail(format!("transfer broke off: {e}")))?;
        file.sync_all().map_err(|e| DataError::io(part, e))?;
        Ok(())
    }

    #[cfg(not(feature = "download"))]
    fn download_to(&self, _part: &Path) -> Result<()> {
        Err(DataError::Download {
            url: self.url.clone(),
            reason: "this build of cxr-data has no `download` feature".into(),
        })
    }
}

/// Largest download accepted (the official file is about 4 MB).
#[cfg(feature = "download")]
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
