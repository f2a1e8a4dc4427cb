//! This crate's own reading and writing helpers: errors are [`ReportError`]s naming the
//! file; writes go through the run-folder format's atomic writer.

use std::path::Path;

use crate::{ReportError, Result};

pub(crate) fn read(path: &Path) -> Result<String> {
    Ok(cxr_runfolder::read(path)?)
}

pub(crate) fn format_err(path: &Path, reason: impl Into<String>) -> ReportError {
    ReportError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(cxr_runfolder::write_atomic(path, bytes)?)
}
