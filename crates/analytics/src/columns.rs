//! Polars frames of partial aggregates as plain columns, so the engines' state can go through
//! serde (including non-self-describing formats such as bincode).
//!
//! Each engine carries one frame with a fixed schema. [`frame_columns!`] declares its image: a
//! struct with one `Vec` per column that copies the frame out (checking the names, order and
//! dtypes, so a schema change in the engine is an error rather than silently lost state) and
//! rebuilds the same frame: same column names, dtypes and row order.

use polars::prelude::*;

/// Declares the plain-columns image of a frame with a fixed schema: `struct NAME { column:
/// PolarsType, ... }` becomes a serde struct of `Vec<PolarsType::Native>` with
/// `from_frame(&DataFrame)` and `into_frame(self)`. Columns are listed in frame order.
macro_rules! frame_columns {
    (
        $(#[$meta:meta])*
        struct $name:ident { $($column:ident: $dtype:ty),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize, serde::Deserialize)]
        struct $name {
            $($column: Vec<<$dtype as polars::prelude::PolarsNumericType>::Native>,)+
        }

        impl $name {
            /// Column names, in frame order.
            const COLUMNS: &'static [&'static str] = &[$(stringify!($column)),+];

            /// Copies the columns out of `df`, which must have exactly this schema and no nulls.
            fn from_frame(
                df: &polars::prelude::DataFrame,
            ) -> polars::prelude::PolarsResult<Self> {
                $crate::columns::check_names(df, Self::COLUMNS)?;
                Ok($name {
                    $($column: $crate::columns::values::<$dtype>(df, stringify!($column))?,)+
                })
            }

            /// Rebuilds the frame: same column names, dtypes and row order. Errors if the
            /// columns do not all have the same length.
            fn into_frame(self) -> polars::prelude::PolarsResult<polars::prelude::DataFrame> {
                let height = [$(self.$column.len()),+][0];
                let columns = vec![
                    $(polars::prelude::Column::new(stringify!($column).into(), self.$column)),+
                ];
                polars::prelude::DataFrame::new(height, columns)
            }
        }
    };
}
pub(crate) use frame_columns;

/// Errors unless `df` has exactly the columns `names`, in that order.
pub(crate) fn check_names(df: &DataFrame, names: &[&str]) -> PolarsResult<()> {
    let got = df.get_column_names();
    polars_ensure!(
        got.iter().map(|n| n.as_str()).eq(names.iter().copied()),
        SchemaMismatch: "partial frame has columns {got:?}, expected {names:?}"
    );
    Ok(())
}

/// The values of column `name` of `df`, which must have dtype `T` and no nulls.
pub(crate) fn values<T: PolarsNumericType>(
    df: &DataFrame,
    name: &str,
) -> PolarsResult<Vec<T::Native>> {
    let values = df
        .column(name)?
        .as_materialized_series()
        .unpack::<T>()
        .map_err(|e| e.wrap_msg(|m| format!("column `{name}`: {m}")))?;
    polars_ensure!(
        values.null_count() == 0,
        ComputeError: "column `{name}` of a partial frame has nulls"
    );
    Ok(values.into_no_null_iter().collect())
}
