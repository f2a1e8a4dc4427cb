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
    /// The path of `file_name` (e.g. [`PNEUMONIAMNIST_FILE`]). An explicit path that
    /// does not exist is an error at once: it is never replaced by another file.
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
            return Err(DataError::NotFound {
                file: file_name.into(),
                tried: vec![candidate],
                hint: "the path given with --data does not exist".into(),
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

    /// Downloads `self.url` to `target` through `target.part`, checks the md5, then
    /// renames. On any failure the partial file is removed.
    pub fn download(&self, target: &Path) -> Result<()> {
        let part = target.with_extension("npz.part");
        let result = self.download_to(&part);
        let result = result.and_then(|()| {
            let actual = md5_file(&part)?;
            if actual != self.md5 {
                return Err(DataError::Checksum {
                    path: target.to_path_buf(),
                    expected: self.md5.clone(),
                    actual,
                });
            }
            std::fs::rename(&part, target).map_err(|e| DataError::io(target, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    #[cfg(feature = "download")]
    fn download_to(&self, part: &Path) -> Result<()> {
        let fail = |reason: String| DataError::Download {
            url: self.url.clone(),
            reason,
        };
        if let Some(dir) = part.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        tracing::info!("downloading {} to {}", self.url, part.display());
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(10)))
            .build()
            .new_agent();
        let mut resp = agent
            .get(&self.url)
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let mut reader = resp.body_mut().with_config().limit(1 << 31).reader();
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
            reason: "this build has no `download` feature".into(),
        })
    }
}

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
