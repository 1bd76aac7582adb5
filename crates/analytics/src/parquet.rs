//! Writing result tables to Parquet (one file per closed window), so history can be queried
//! offline with Polars, DuckDB or Spark. Decimal values are written as strings (exact; `CAST`
//! them to a DECIMAL when querying), integers as Int64.
//!
//! Written with Polars' Parquet crate directly (`polars-parquet`, the writer Polars' own
//! `ParquetWriter` drives): what Polars' `parquet` feature costs the build — its streaming engine,
//! the categorical and struct dtypes through `polars-core`, the cloud I/O stack — buys nothing
//! for two column types. The pages are what `ParquetWriter` writes for the same table (Parquet v1,
//! dictionary encoding, min/max/null-count statistics, nullable columns, the Arrow schema in the
//! footer); the compression is Snappy, where `ParquetWriter` used zstd (files written before this
//! change hold the same values in different bytes; a backfill rewrites them).

use polars::prelude::{PlSmallStr, PolarsError, PolarsResult};
use polars_arrow::array::{Array, PrimitiveArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, ArrowSchema, Field};
use polars_arrow::record_batch::RecordBatchT;
use polars_parquet::write::{
    get_dtype_encoding, CompressionOptions, FileWriter, RowGroupIterator, StatisticsOptions,
    Version, WriteOptions,
};
use std::path::Path;
use std::sync::Arc;

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

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Str(s) => s.len(),
            Values::I64(i) => i.len(),
        }
    }
}

/// Writes `columns` (all the same length, none null) to `path` as one row group, creating
/// parent directories. The file is written to a temporary name and renamed, so readers never see
/// a partial file. The same table gives the same bytes (replays rewrite identical files).
pub fn write_table(path: &Path, columns: Vec<(&str, Values)>) -> PolarsResult<()> {
    let height = columns.first().map_or(0, |(_, v)| v.len());
    if let Some((name, _)) = columns.iter().find(|(_, v)| v.len() != height) {
        return Err(PolarsError::ShapeMismatch(
            format!("column {name:?} differs in length from the first column ({height} rows)")
                .into(),
        ));
    }
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<Box<dyn Array>> = Vec::with_capacity(columns.len());
    for (name, values) in columns {
        let (dtype, array): (_, Box<dyn Array>) = match values {
            Values::Str(s) => (
                ArrowDataType::Utf8View,
                Box::new(Utf8ViewArray::from_slice_values(&s)),
            ),
            Values::I64(i) => (
                ArrowDataType::Int64,
                Box::new(PrimitiveArray::<i64>::from_vec(i)),
            ),
        };
        // Nullable, as Polars declares every column (no value is ever null here).
        fields.push(Field::new(PlSmallStr::from(name), dtype, true));
        arrays.push(array);
    }
    let schema: ArrowSchema = fields.into_iter().collect();
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        version: Version::V1,
        compression: CompressionOptions::Snappy,
        data_page_size: None,
    };
    let encodings = schema
        .iter_values()
        .map(|f| get_dtype_encoding(&f.dtype))
        .collect();
    let batch = RecordBatchT::try_new(height, Arc::new(schema.clone()), arrays)?;
    let row_groups =
        RowGroupIterator::try_new(std::iter::once(Ok(batch)), &schema, options, encodings)?;

    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A name of this process's own: two writers of one window (an old instance still running
    // through a rebalance) never write into one file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("parquet.{}-{n}.tmp", std::process::id()));
    let written = (|| -> PolarsResult<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut writer = FileWriter::try_new(file, schema, options)?;
        for group in row_groups {
            writer.write(height as u64, group?)?;
        }
        writer.end(None)?;
        let file = writer.into_inner();
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself survives a crash once the directory is synced.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The number of rows in a Parquet file, from its footer (for tests and tools; to read the
/// values, use Polars, DuckDB or pyarrow — `data/parquet_layout.md`).
pub fn row_count(path: &Path) -> PolarsResult<usize> {
    let mut file = std::fs::File::open(path)?;
    Ok(polars_parquet::read::read_metadata(&mut file)?.num_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<(&'static str, Values)> {
        vec![
            (
                "instrument",
                Values::Str(vec!["TCS".into(), "INFY".into(), "TCS".into()]),
            ),
            ("end_ms", Values::I64(vec![1_000, 2_000, -3])),
            (
                "close",
                Values::Str(vec!["15.25".into(), "1499.70".into(), "".into()]),
            ),
        ]
    }

    #[test]
    fn a_table_is_written_whole_and_identically_every_time() {
        let dir = std::env::temp_dir().join(format!("kx-parquet-{}", std::process::id()));
        let a = window_file(&dir, "bars", 1_000, 3);
        assert!(a.ends_with("bars/window_end_ms=1000/part-3.parquet"));
        write_table(&a, table()).unwrap();
        let b = dir.join("again.parquet");
        write_table(&b, table()).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
        assert_eq!(bytes, std::fs::read(&b).unwrap(), "deterministic bytes");
        assert_eq!(row_count(&a).unwrap(), 3);
        let left: Vec<_> = std::fs::read_dir(a.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["part-3.parquet"], "no temporary file left");

        let mut file = std::fs::File::open(&a).unwrap();
        let meta = polars_parquet::read::read_metadata(&mut file).unwrap();
        let columns: Vec<String> = meta
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(columns, ["instrument", "end_ms", "close"]);

        write_table(&b, vec![("empty", Values::I64(vec![]))]).unwrap();
        assert_eq!(row_count(&b).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn columns_of_different_lengths_are_refused_and_nothing_is_written() {
        let dir = std::env::temp_dir().join(format!("kx-parquet-bad-{}", std::process::id()));
        let path = dir.join("t.parquet");
        let err = write_table(
            &path,
            vec![
                ("a", Values::I64(vec![1, 2])),
                ("b", Values::Str(vec!["x".into()])),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"b\""), "{err}");
        assert!(!path.exists() && !dir.exists(), "nothing written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
