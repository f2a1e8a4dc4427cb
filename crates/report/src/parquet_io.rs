//! `predictions.parquet`: the rows of `predictions.csv` as a typed columnar file
//! (one row group, uncompressed), written with the low-level `parquet` writer.
//!
//! Schema: `split` (UTF-8), `index` (INT64), `label` (INT32), `prob` (DOUBLE) and,
//! when `predictions.csv` has them, `logit` and `prob_calibrated` (DOUBLE), then `path`
//! (UTF-8, empty for npz data). All columns are required (no nulls).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::RowAccessor;
use parquet::schema::parser::parse_message_type;

use cxr_runfolder::PredictionRow;

use crate::{ReportError, Result};

fn perr(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `rows` to `path` atomically. The `logit` and
/// `prob_calibrated` columns are written when every row has them.
pub fn write_predictions_parquet(path: &Path, rows: &[PredictionRow]) -> Result<()> {
    let full = !rows.is_empty()
        && rows
            .iter()
            .all(|r| r.logit.is_some() && r.prob_calibrated.is_some());
    let mut schema = String::from(
        "message predictions {
            REQUIRED BYTE_ARRAY split (UTF8);
            REQUIRED INT64 index;
            REQUIRED INT32 label;
            REQUIRED DOUBLE prob;",
    );
    if full {
        schema.push_str(
            "
            REQUIRED DOUBLE logit;
            REQUIRED DOUBLE prob_calibrated;",
        );
    }
    schema.push_str("\n            REQUIRED BYTE_ARRAY path (UTF8);\n}");
    let path_col = if full { 6 } else { 4 };
    let schema = Arc::new(parse_message_type(&schema).map_err(|e| perr(path, e))?);
    let props = Arc::new(WriterProperties::builder().build());

    // Encoded in memory (a few rows per image), then written atomically.
    let bytes = (|| -> Result<Vec<u8>> {
        let mut writer =
            SerializedFileWriter::new(Vec::new(), schema, props).map_err(|e| perr(path, e))?;
        let mut group = writer.next_row_group().map_err(|e| perr(path, e))?;
        let mut col = 0usize;
        while let Some(mut w) = group.next_column().map_err(|e| perr(path, e))? {
            let written = match col {
                c if c == path_col => {
                    let v: Vec<ByteArray> = rows
                        .iter()
                        .map(|r| ByteArray::from(r.path.as_deref().unwrap_or("")))
                        .collect();
                    w.typed::<ByteArrayType>().write_batch(&v, None, None)
                }
                0 => {
                    let v: Vec<ByteArray> = rows
                        .iter()
                        .map(|r| ByteArray::from(r.split.as_str()))
                        .collect();
                    w.typed::<ByteArrayType>().write_batch(&v, None, None)
                }
                1 => {
                    let v: Vec<i64> = rows.iter().map(|r| r.index as i64).collect();
                    w.typed::<Int64Type>().write_batch(&v, None, None)
                }
                2 => {
                    let v: Vec<i32> = rows.iter().map(|r| i32::from(r.label)).collect();
                    w.typed::<Int32Type>().write_batch(&v, None, None)
                }
                3 => {
                    let v: Vec<f64> = rows.iter().map(|r| r.prob).collect();
                    w.typed::<DoubleType>().write_batch(&v, None, None)
                }
                4 => {
                    let v: Vec<f64> = rows.iter().map(|r| r.logit.unwrap_or(f64::NAN)).collect();
                    w.typed::<DoubleType>().write_batch(&v, None, None)
                }
                _ => {
                    let v: Vec<f64> = rows
                        .iter()
                        .map(|r| r.prob_calibrated.unwrap_or(f64::NAN))
                        .collect();
                    w.typed::<DoubleType>().write_batch(&v, None, None)
                }
            };
            written.map_err(|e| perr(path, e))?;
            w.close().map_err(|e| perr(path, e))?;
            col += 1;
        }
        group.close().map_err(|e| perr(path, e))?;
        writer.into_inner().map_err(|e| perr(path, e))
    })()?;
    crate::files::write_atomic(path, &bytes)
}

/// Reads a `predictions.parquet` written by [`write_predictions_parquet`].
pub fn read_predictions_parquet(path: &Path) -> Result<Vec<PredictionRow>> {
    let file = File::open(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = SerializedFileReader::new(file).map_err(|e| perr(path, e))?;
    let fields = reader.metadata().file_metadata().schema().get_fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    // Files written before the `path` column have no such column.
    let has_path = names.last() == Some(&"path");
    let cols = &names[..names.len() - usize::from(has_path)];
    let full = match cols {
        ["split", "index", "label", "prob"] => false,
        [
            "split",
            "index",
            "label",
            "prob",
            "logit",
            "prob_calibrated",
        ] => true,
        other => {
            return Err(perr(
                path,
                format!(
                    "unexpected columns {other:?} (expected split, index, label, prob[, logit, prob_calibrated][, path])"
                ),
            ));
        }
    };
    let mut out = Vec::new();
    for (i, row) in reader
        .get_row_iter(None)
        .map_err(|e| perr(path, e))?
        .enumerate()
    {
        let row = row.map_err(|e| perr(path, e))?;
        let bad = |e: parquet::errors::ParquetError| perr(path, format!("row {i}: {e}"));
        let label = row.get_int(2).map_err(bad)?;
        let index = row.get_long(1).map_err(bad)?;
        out.push(PredictionRow {
            split: row.get_string(0).map_err(bad)?.clone(),
            index: usize::try_from(index)
                .map_err(|_| perr(path, format!("row {i}: negative index {index}")))?,
            label: u8::try_from(label)
                .ok()
                .filter(|l| *l <= 1)
                .ok_or_else(|| perr(path, format!("row {i}: label {label} is not 0 or 1")))?,
            prob: row.get_double(3).map_err(bad)?,
            logit: if full {
                Some(row.get_double(4).map_err(bad)?)
            } else {
                None
            },
            prob_calibrated: if full {
                Some(row.get_double(5).map_err(bad)?)
            } else {
                None
            },
            path: if has_path {
                Some(row.get_string(cols.len()).map_err(bad)?.clone()).filter(|p| !p.is_empty())
            } else {
                None
            },
        });
    }
    Ok(out)
}
