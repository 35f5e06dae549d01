//! `tasks.parquet`: the per-task table (same columns as `tasks.csv`).

use anyhow::Result;
use polars::prelude::*;
use std::path::Path;

/// Write a data frame as parquet.
pub fn write(df: &mut DataFrame, path: &Path) -> Result<()> {
    let f = std::fs::File::create(path)?;
    ParquetWriter::new(f).finish(df)?;
    Ok(())
}
