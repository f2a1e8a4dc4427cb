//! The evaluation folder's tables, written with polars: `predictions.parquet`,
//! `subgroups.csv`, `subgroups.parquet`. Each is built in memory and put in place
//! atomically.

use std::path::Path;

use cxr_predict::ChosenPoint;
use cxr_runfolder::{SubgroupTable, names, write_atomic};
use polars::prelude::*;

use crate::metadata::ROW;
use crate::set::ImageKey;
use crate::{EvaluateError, Result};

fn parquet_bytes(path: &Path, df: &mut DataFrame) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .finish(df)
        .map_err(EvaluateError::table(path))?;
    Ok(buf)
}

fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let bytes = parquet_bytes(path, df)?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// One row per image: its key, label, logit, probabilities, the decision at `point`,
/// model B's probability with `--compare`, and the metadata columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_predictions(
    path: &Path,
    keys: &[ImageKey],
    labels: &[u8],
    logits: &[f64],
    temperature: f64,
    point: &ChosenPoint,
    probs_b: Option<&[f64]>,
    metadata: Option<&DataFrame>,
) -> Result<()> {
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let probs: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
    let mut columns = vec![
        Column::new(
            "path".into(),
            keys.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "file".into(),
            keys.iter().map(|k| k.file.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "index".into(),
            keys.iter().map(|k| k.index as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "frame".into(),
            keys.iter().map(|k| k.frame as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "label".into(),
            labels.iter().map(|&l| u32::from(l)).collect::<Vec<_>>(),
        ),
        Column::new("logit".into(), logits.to_vec()),
        Column::new("prob".into(), probs.clone()),
        Column::new(
            "prob_calibrated".into(),
            logits
                .iter()
                .map(|&z| sigmoid(z / temperature))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "decision".into(),
            probs
                .iter()
                .map(|&p| {
                    if p >= point.threshold {
                        "pneumonia"
                    } else {
                        "normal"
                    }
                })
                .collect::<Vec<_>>(),
        ),
    ];
    if let Some(b) = probs_b {
        columns.push(Column::new("prob_b".into(), b.to_vec()));
    }
    let mut df = DataFrame::new_infer_height(columns).map_err(EvaluateError::table(path))?;
    if let Some(meta) = metadata {
        let taken: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let extra: Vec<Column> = meta
            .columns()
            .iter()
            .filter(|c| c.name().as_str() != ROW)
            .map(|c| {
                let mut c = c.clone();
                if taken.iter().any(|t| t == c.name().as_str()) {
                    let name = format!("meta_{}", c.name());
                    c.rename(name.into());
                }
                c
            })
            .collect();
        df.hstack_mut(&extra).map_err(EvaluateError::table(path))?;
    }
    write_parquet(path, &mut df)
}

/// One row per column and group.
pub(crate) fn write_subgroups(dir: &Path, tables: &[SubgroupTable]) -> Result<()> {
    let csv_path = dir.join(names::SUBGROUPS_CSV);
    let rows = || {
        tables
            .iter()
            .flat_map(|t| t.groups.iter().map(move |g| (t, g)))
    };
    let text = |f: fn(&SubgroupTable, &cxr_runfolder::SubgroupRow) -> String| {
        rows().map(|(t, g)| f(t, g)).collect::<Vec<String>>()
    };
    let num = |f: fn(&SubgroupTable, &cxr_runfolder::SubgroupRow) -> Option<f64>| {
        rows().map(|(t, g)| f(t, g)).collect::<Vec<Option<f64>>>()
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new("column".into(), text(|t, _| t.column.clone())),
        Column::new("kind".into(), text(|t, _| t.kind.clone())),
        Column::new("group".into(), text(|_, g| g.group.clone())),
        Column::new("n".into(), rows().map(|(_, g)| g.n).collect::<Vec<_>>()),
        Column::new(
            "positives".into(),
            rows().map(|(_, g)| g.positives).collect::<Vec<_>>(),
        ),
        Column::new("prevalence".into(), num(|_, g| Some(g.prevalence))),
        Column::new(
            "too_small".into(),
            rows().map(|(_, g)| g.too_small).collect::<Vec<_>>(),
        ),
        Column::new("auc".into(), num(|_, g| g.auc)),
        Column::new("auc_low".into(), num(|_, g| g.auc_low)),
        Column::new("auc_high".into(), num(|_, g| g.auc_high)),
        Column::new(
            "operating_point".into(),
            text(|t, _| t.operating_point.clone()),
        ),
        Column::new("threshold".into(), num(|t, _| Some(t.threshold))),
        Column::new(
            "sensitivity".into(),
            num(|_, g| g.sensitivity.map(|s| s.estimate)),
        ),
        Column::new(
            "sensitivity_low".into(),
            num(|_, g| g.sensitivity.map(|s| s.wilson_low)),
        ),
        Column::new(
            "sensitivity_high".into(),
            num(|_, g| g.sensitivity.map(|s| s.wilson_high)),
        ),
        Column::new(
            "specificity".into(),
            num(|_, g| g.specificity.map(|s| s.estimate)),
        ),
        Column::new(
            "specificity_low".into(),
            num(|_, g| g.specificity.map(|s| s.wilson_low)),
        ),
        Column::new(
            "specificity_high".into(),
            num(|_, g| g.specificity.map(|s| s.wilson_high)),
        ),
        Column::new("note".into(), text(|_, g| g.note.clone())),
    ])
    .map_err(EvaluateError::table(&csv_path))?;
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv)
        .include_header(true)
        .finish(&mut df)
        .map_err(EvaluateError::table(&csv_path))?;
    write_atomic(&csv_path, &csv)?;
    write_parquet(&dir.join(names::SUBGROUPS_PARQUET), &mut df)
}
