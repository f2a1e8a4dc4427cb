//! The metadata table (CSV or parquet, read with polars), joined to the scored images,
//! and the groups of a `--group-by` column.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use cxr_runfolder::MetadataJoin;
use polars::prelude::*;

use crate::set::ImageKey;
use crate::{EvaluateError, Result};

/// Row number of each image in the joined table (the images' order).
pub(crate) const ROW: &str = "__row";
const KEY: &str = "__key";
const MATCHED: &str = "__matched";
const GROUP: &str = "__group";
/// Examples of unmatched keys kept for the report.
const EXAMPLES: usize = 10;
/// A numeric column with more distinct values than this is cut into quantile bins.
const MAX_NUMERIC_CATEGORIES: usize = 10;
/// The group of images without a value.
pub(crate) const MISSING: &str = "(missing)";

/// What a metadata key is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKey {
    /// The image's path relative to the set as given, `/`-separated
    /// (`PNEUMONIA/person1_virus_6.jpeg`, or `test/PNEUMONIA/…` for a folder with splits).
    Path,
    /// The image's file name.
    File,
    /// The image's 0-based position in its npz split.
    Index,
}

impl JoinKey {
    /// `path`, `file` or `index`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::File => "file",
            Self::Index => "index",
        }
    }
}

impl std::str::FromStr for JoinKey {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "path" => Ok(Self::Path),
            "file" => Ok(Self::File),
            "index" => Ok(Self::Index),
            other => Err(format!("`{other}`: expected path, file or index")),
        }
    }
}

/// Reads a `.csv` or `.parquet` table.
pub(crate) fn read_table(path: &Path) -> Result<DataFrame> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let err = EvaluateError::table(path);
    match ext.as_str() {
        "csv" => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(100_000))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(err),
        "parquet" => {
            let file = std::fs::File::open(path).map_err(|e| EvaluateError::io(path, e))?;
            ParquetReader::new(file).finish().map_err(err)
        }
        _ => Err(EvaluateError::Metadata {
            path: path.to_path_buf(),
            reason: "expected a .csv or .parquet table".into(),
        }),
    }
}

/// The column names of `df` as one string, for error messages.
pub(crate) fn column_list(df: &DataFrame) -> String {
    df.get_column_names()
        .iter()
        .filter(|c| !c.starts_with("__"))
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `value` as the images' keys are written: `/` separators, no leading `./`.
fn normalize_path(value: &str) -> String {
    let v = value.trim().replace('\\', "/");
    v.strip_prefix("./").unwrap_or(&v).to_string()
}

/// The table joined to `keys` on its column `join_on`: one row per image, in the images'
/// order, with the table's columns (null where an image has no row), and what matched.
pub(crate) fn join(
    path: &Path,
    table: DataFrame,
    keys: &[ImageKey],
    join_on: &str,
    key: JoinKey,
) -> Result<(DataFrame, MetadataJoin)> {
    let bad = |reason: String| EvaluateError::Metadata {
        path: path.to_path_buf(),
        reason,
    };
    let column = table.column(join_on).map_err(|_| {
        bad(format!(
            "no column `{join_on}` to join on (the table has: {})",
            column_list(&table)
        ))
    })?;
    // The table's keys as strings in the images' spelling.
    let table_keys: Vec<Option<String>> = match key {
        JoinKey::Index => {
            let ints = column.strict_cast(&DataType::Int64).map_err(|_| {
                bad(format!(
                    "column `{join_on}` must hold whole numbers to join on the image index"
                ))
            })?;
            ints.i64()
                .map_err(EvaluateError::table(path))?
                .iter()
                .map(|v| v.map(|i| i.to_string()))
                .collect()
        }
        JoinKey::Path | JoinKey::File => column
            .cast(&DataType::String)
            .map_err(EvaluateError::table(path))?
            .str()
            .map_err(EvaluateError::table(path))?
            .iter()
            .map(|v| {
                v.map(|s| match key {
                    JoinKey::Path => normalize_path(s),
                    _ => s.trim().to_string(),
                })
            })
            .collect(),
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for k in table_keys.iter().flatten() {
        *seen.entry(k.as_str()).or_default() += 1;
    }
    let dup: BTreeSet<&str> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| *k)
        .collect();
    if !dup.is_empty() {
        let first: Vec<&str> = dup.iter().take(5).copied().collect();
        return Err(bad(format!(
            "{} values of `{join_on}` occur more than once (e.g. {}): each image needs one row",
            dup.len(),
            first.join(", ")
        )));
    }
    let image_key = |k: &ImageKey| match key {
        JoinKey::Path => k.path.clone(),
        JoinKey::File => k.file.clone(),
        JoinKey::Index => k.index.to_string(),
    };
    let image_keys: Vec<String> = keys.iter().map(image_key).collect();
    let image_set: HashSet<&str> = image_keys.iter().map(String::as_str).collect();

    let mut right = table.clone();
    let tp = EvaluateError::table(path);
    right
        .with_column(Column::new(
            KEY.into(),
            table_keys.iter().map(|k| k.as_deref()).collect::<Vec<_>>(),
        ))
        .and_then(|df| df.with_column(Column::new(MATCHED.into(), vec![true; df.height()])))
        .map_err(tp)?;
    let rows: Vec<u32> = (0..keys.len() as u32).collect();
    let left = DataFrame::new_infer_height(vec![
        Column::new(ROW.into(), rows),
        Column::new(KEY.into(), image_keys.clone()),
    ])
    .map_err(EvaluateError::table(path))?;
    let joined = left
        .join(&right, [KEY], [KEY], JoinArgs::new(JoinType::Left), None)
        .and_then(|df| df.sort([ROW], SortMultipleOptions::default()))
        .map_err(EvaluateError::table(path))?;
    if joined.height() != keys.len() {
        return Err(bad(format!(
            "the join gave {} rows for {} images",
            joined.height(),
            keys.len()
        )));
    }
    let matched_col = joined
        .column(MATCHED)
        .and_then(|c| c.bool().cloned())
        .map_err(EvaluateError::table(path))?;
    let mut images_without = Vec::new();
    for (i, m) in matched_col.iter().enumerate() {
        if m != Some(true) {
            images_without.push(image_keys[i].clone());
        }
    }
    let rows_without: Vec<String> = table_keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.as_deref().is_none_or(|k| !image_set.contains(k)))
        .map(|(i, k)| {
            k.clone()
                .unwrap_or_else(|| format!("(empty key, row {})", i + 1))
        })
        .collect();
    let joined = joined
        .drop(KEY)
        .and_then(|df| df.drop(MATCHED))
        .map_err(EvaluateError::table(path))?;
    let info = MetadataJoin {
        table: path.display().to_string(),
        join_on: join_on.to_string(),
        key: key.as_str().to_string(),
        rows: table.height(),
        columns: table
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect(),
        matched: keys.len() - images_without.len(),
        rows_without_image: rows_without.len(),
        rows_without_image_examples: rows_without.into_iter().take(EXAMPLES).collect(),
        images_without_row: images_without.len(),
        images_without_row_examples: images_without.into_iter().take(EXAMPLES).collect(),
    };
    Ok((joined, info))
}

/// One group of a column: its label and the images' rows in it.
pub(crate) struct Group {
    pub label: String,
    pub rows: Vec<usize>,
}

/// The groups of `column` of the joined table: categories (sorted), or for a numeric
/// column with more than ten distinct values `bins` quantile bins (ascending); images
/// without a value form `(missing)`, last. Returns the kind (`categorical`,
/// `quantile`) and the groups.
pub(crate) fn groups(
    table_path: &Path,
    joined: &DataFrame,
    column: &str,
    bins: usize,
) -> Result<(&'static str, Vec<Group>)> {
    let col = joined.column(column).map_err(|_| EvaluateError::Metadata {
        path: table_path.to_path_buf(),
        reason: format!(
            "--group-by: no column `{column}` (the table has: {})",
            column_list(joined)
        ),
    })?;
    let tp = || EvaluateError::table(table_path);
    let numeric = col.dtype().is_primitive_numeric();
    let values: Vec<Option<f64>> = if numeric {
        col.cast(&DataType::Float64)
            .map_err(tp())?
            .f64()
            .map_err(tp())?
            .iter()
            .map(|v| v.filter(|x| x.is_finite()))
            .collect()
    } else {
        Vec::new()
    };
    let distinct = values
        .iter()
        .flatten()
        .map(|v| v.to_bits())
        .collect::<HashSet<u64>>()
        .len();
    let (kind, labels, order): (&'static str, Vec<String>, Vec<String>) =
        if numeric && distinct > MAX_NUMERIC_CATEGORIES {
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            let qs: Vec<f64> = (1..bins).map(|i| i as f64 / bins as f64).collect();
            let mut edges = cxr_metrics::quantiles(&present, &qs)
                .map_err(EvaluateError::metrics("quantile bins"))?;
            edges.dedup();
            let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // bucket_of: bucket i holds edges[i−1] < v ≤ edges[i].
            let mut bounds = vec![lo];
            bounds.extend(&edges);
            bounds.push(hi);
            let names: Vec<String> = (0..bounds.len() - 1)
                .map(|i| {
                    let open = if i == 0 { "[" } else { "(" };
                    format!(
                        "{open}{}, {}]",
                        fmt_edge(bounds[i]),
                        fmt_edge(bounds[i + 1])
                    )
                })
                .collect();
            let labels = values
                .iter()
                .map(|v| match v {
                    Some(x) => names[cxr_metrics::bucket_of(*x, &edges)].clone(),
                    None => MISSING.to_string(),
                })
                .collect();
            ("quantile", labels, names)
        } else {
            let strings = col.cast(&DataType::String).map_err(tp())?;
            let labels: Vec<String> = strings
                .str()
                .map_err(tp())?
                .iter()
                .map(|v| match v.map(str::trim) {
                    Some(s) if !s.is_empty() => s.to_string(),
                    _ => MISSING.to_string(),
                })
                .collect();
            let mut order: Vec<String> = labels
                .iter()
                .filter(|l| *l != MISSING)
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if numeric {
                order.sort_by(|a, b| {
                    let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
                    num(a).total_cmp(&num(b))
                });
            }
            ("categorical", labels, order)
        };
    let frame = DataFrame::new_infer_height(vec![
        joined.column(ROW).map_err(tp())?.clone(),
        Column::new(GROUP.into(), labels),
    ])
    .map_err(tp())?;
    let mut found: HashMap<String, Vec<usize>> = HashMap::new();
    for part in frame.partition_by_stable([GROUP], true).map_err(tp())? {
        let label = part
            .column(GROUP)
            .and_then(|c| c.str().cloned())
            .map_err(tp())?
            .get(0)
            .unwrap_or(MISSING)
            .to_string();
        let rows = part
            .column(ROW)
            .and_then(|c| c.u32().cloned())
            .map_err(tp())?
            .into_no_null_iter()
            .map(|r| r as usize)
            .collect();
        found.insert(label, rows);
    }
    let mut out: Vec<Group> = order
        .into_iter()
        .map(|label| Group {
            rows: found.remove(&label).unwrap_or_default(),
            label,
        })
        .collect();
    if let Some(rows) = found.remove(MISSING) {
        out.push(Group {
            label: MISSING.into(),
            rows,
        });
    }
    Ok((kind, out))
}

/// A bin edge, short: integers without decimals, others to 4 significant digits.
fn fmt_edge(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}
