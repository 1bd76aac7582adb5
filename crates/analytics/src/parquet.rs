//! Writing result tables to Parquet (one file per closed window), so history can be queried
//! offline with Polars or DuckDB. Decimal values are written as strings (exact; `CAST` them to a
//! DECIMAL when querying), integers as Int64.

use polars::prelude::*;
use std::path::Path;

/// The file of one closed window of one input partition:
/// `DIR/KIND/window_end_ms=END/part-PARTITION.parquet` (Hive-style, see `data/parquet_layout.md`).
pub fn window_file(
    dir: &Path,
    kind: &str,
    window_end_ms: i64,
    partition: i32,
) -> std::path::PathBuf {
    dir.join(kind)
        .join(format!("window_end_ms={window_end_ms}"))
        .join(format!("part-{partition}.parquet"))
}

/// A column of a result table.
pub enum Values {
    Str(Vec<String>),
    I64(Vec<i64>),
}

/// Writes `columns` (all the same length) to `path`, creating parent directories. The file is
/// written to a temporary name and renamed, so readers never see a partial file.
pub fn write_table(path: &Path, columns: Vec<(&str, Values)>) -> PolarsResult<()> {
    let height = columns.first().map_or(0, |(_, v)| match v {
        Values::Str(s) => s.len(),
        Values::I64(i) => i.len(),
    });
    let cols = columns
        .into_iter()
        .map(|(name, v)| match v {
            Values::Str(s) => Column::new(name.into(), s),
            Values::I64(i) => Column::new(name.into(), i),
        })
        .collect();
    let mut df = DataFrame::new(height, cols)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp)?;
    ParquetWriter::new(file).finish(&mut df)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a Parquet file back (for tests and tools).
pub fn read_table(path: &Path) -> PolarsResult<DataFrame> {
    let file = std::fs::File::open(path)?;
    ParquetReader::new(file).finish()
}
