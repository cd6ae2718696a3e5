//! `samples.parquet`: the per-sample table of `table` as a Parquet file, for
//! pandas (`pd.read_parquet`) and other column stores. Typed columns:
//! `doc_index` and `gold_index` 64-bit integers, `missing` a boolean, each
//! metric a double; text columns UTF-8 (the prompt's messages, several
//! outputs and the choices as JSON text, as in the CSV table).
//!
//! Rows are buffered one row group at a time ([`ROW_GROUP`]), so memory
//! stays bounded whatever the number of documents.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::Type;

use super::table::{
    for_each_row, metric_column, metric_names, TableError, TableRow, LEADING, TRAILING,
};

/// The Parquet table's file name beside `samples.jsonl`.
pub const PARQUET_FILE: &str = "samples.parquet";

/// Rows per row group: large enough for good compression, small enough
/// that a buffered group (prompts included) stays a few tens of MB.
const ROW_GROUP: usize = 10_000;

/// Writes `dest` (Parquet, zstd pages) from the `samples.jsonl` at
/// `samples`; returns the number of rows.
pub fn write_parquet(samples: &Path, dest: &Path) -> Result<u64, TableError> {
    let metrics = metric_names(samples)?;
    let fail = |e: parquet::errors::ParquetError| TableError::write(dest, e);
    let file = File::create(dest).map_err(|e| TableError::write(dest, e))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer =
        SerializedFileWriter::new(file, schema(&metrics).map_err(fail)?, Arc::new(properties))
            .map_err(fail)?;
    let mut group = Vec::with_capacity(ROW_GROUP);
    let mut rows = 0;
    for_each_row(samples, &metrics, |row| {
        group.push(row);
        rows += 1;
        if group.len() == ROW_GROUP {
            write_group(&mut writer, &group, metrics.len()).map_err(fail)?;
            group.clear();
        }
        Ok(())
    })?;
    if !group.is_empty() {
        write_group(&mut writer, &group, metrics.len()).map_err(fail)?;
    }
    writer.close().map_err(fail)?;
    Ok(rows)
}

/// The column types, in the order of the CSV table's header.
fn schema(metrics: &BTreeSet<String>) -> parquet::errors::Result<Arc<Type>> {
    let text = |name: &str, repetition| {
        Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
            .with_repetition(repetition)
            .with_logical_type(Some(LogicalType::String))
            .build()
    };
    let of = |name: &str, physical, repetition| {
        Type::primitive_type_builder(name, physical)
            .with_repetition(repetition)
            .build()
    };
    const OPTIONAL: Repetition = Repetition::OPTIONAL;
    const REQUIRED: Repetition = Repetition::REQUIRED;
    let [doc_id, doc_index, subset, prompt, output, target, choices, gold_index, missing] = LEADING;
    let mut fields = vec![
        text(doc_id, REQUIRED)?,
        of(doc_index, PhysicalType::INT64, REQUIRED)?,
        text(subset, OPTIONAL)?,
        text(prompt, REQUIRED)?,
        text(output, OPTIONAL)?,
        text(target, OPTIONAL)?,
        text(choices, OPTIONAL)?,
        of(gold_index, PhysicalType::INT64, OPTIONAL)?,
        of(missing, PhysicalType::BOOLEAN, REQUIRED)?,
    ];
    for metric in metrics {
        fields.push(of(&metric_column(metric), PhysicalType::DOUBLE, OPTIONAL)?);
    }
    let [doc_hash, prompt_hash, target_hash] = TRAILING;
    fields.extend([
        text(doc_hash, REQUIRED)?,
        text(prompt_hash, REQUIRED)?,
        text(target_hash, OPTIONAL)?,
    ]);
    let fields = fields.into_iter().map(Arc::new).collect();
    Ok(Arc::new(
        Type::group_type_builder("samples")
            .with_fields(fields)
            .build()?,
    ))
}

/// One row group: each column in the schema's order.
fn write_group(
    writer: &mut SerializedFileWriter<File>,
    rows: &[TableRow],
    metric_count: usize,
) -> parquet::errors::Result<()> {
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        write_column(&mut column, index, rows, metric_count)?;
        column.close()?;
        index += 1;
    }
    group.close()?;
    Ok(())
}

/// Column `index` of `rows`: the leading columns, the metrics, then the
/// trailing hashes.
fn write_column(
    column: &mut SerializedColumnWriter<'_>,
    index: usize,
    rows: &[TableRow],
    metric_count: usize,
) -> parquet::errors::Result<()> {
    let required = |f: fn(&TableRow) -> &str| rows.iter().map(|r| f(r).to_string()).collect();
    let optional = |f: fn(&TableRow) -> Option<&str>| {
        rows.iter()
            .map(|r| f(r).map(str::to_string))
            .collect::<Vec<_>>()
    };
    let metric = index
        .checked_sub(LEADING.len())
        .filter(|m| *m < metric_count);
    if let Some(m) = metric {
        let scores: Vec<Option<f64>> = rows.iter().map(|r| r.scores[m]).collect();
        return write_optional::<DoubleType>(column, &scores, |s| *s);
    }
    let trailing = index.checked_sub(LEADING.len() + metric_count);
    match (index, trailing) {
        (0, _) => write_text(column, required(|r| r.doc_id.as_str())),
        (1, _) => write_required::<Int64Type>(
            column,
            &rows.iter().map(|r| r.doc_index as i64).collect::<Vec<_>>(),
        ),
        (2, _) => write_optional_text(column, optional(|r| r.subset.as_deref())),
        (3, _) => write_text(column, required(|r| r.prompt.as_str())),
        (4, _) => write_optional_text(column, optional(|r| r.output.as_deref())),
        (5, _) => write_optional_text(column, optional(|r| r.target.as_deref())),
        (6, _) => write_optional_text(column, optional(|r| r.choices.as_deref())),
        (7, _) => {
            let gold: Vec<Option<i64>> = rows
                .iter()
                .map(|r| r.gold_index.map(|g| g as i64))
                .collect();
            write_optional::<Int64Type>(column, &gold, |g| *g)
        }
        (8, _) => {
            write_required::<BoolType>(column, &rows.iter().map(|r| r.missing).collect::<Vec<_>>())
        }
        (_, Some(0)) => write_text(column, required(|r| r.doc_hash.as_str())),
        (_, Some(1)) => write_text(column, required(|r| r.prompt_hash.as_str())),
        (_, Some(2)) => write_optional_text(column, optional(|r| r.target_hash.as_deref())),
        _ => Err(parquet::errors::ParquetError::General(format!(
            "no column {index} in the samples table"
        ))),
    }
}

fn write_required<T: parquet::data_type::DataType>(
    column: &mut SerializedColumnWriter<'_>,
    values: &[T::T],
) -> parquet::errors::Result<()> {
    column.typed::<T>().write_batch(values, None, None)?;
    Ok(())
}

/// Present values with definition level 1, absent ones with 0.
fn write_optional<T: parquet::data_type::DataType>(
    column: &mut SerializedColumnWriter<'_>,
    cells: &[Option<T::T>],
    value: impl Fn(&T::T) -> T::T,
) -> parquet::errors::Result<()> {
    let levels: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
    let values: Vec<T::T> = cells.iter().flatten().map(value).collect();
    column
        .typed::<T>()
        .write_batch(&values, Some(&levels), None)?;
    Ok(())
}

fn write_text(
    column: &mut SerializedColumnWriter<'_>,
    values: Vec<String>,
) -> parquet::errors::Result<()> {
    let values: Vec<ByteArray> = values
        .into_iter()
        .map(|v| ByteArray::from(v.into_bytes()))
        .collect();
    write_required::<ByteArrayType>(column, &values)
}

fn write_optional_text(
    column: &mut SerializedColumnWriter<'_>,
    cells: Vec<Option<String>>,
) -> parquet::errors::Result<()> {
    let cells: Vec<Option<ByteArray>> = cells
        .into_iter()
        .map(|c| c.map(|v| ByteArray::from(v.into_bytes())))
        .collect();
    write_optional::<ByteArrayType>(column, &cells, Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::table::tests::{three_samples, THREE_SAMPLES_HEADER};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn the_table_reads_back_with_its_types() {
        let dir = tempfile::tempdir().unwrap();
        let samples = three_samples(dir.path());
        let dest = dir.path().join(PARQUET_FILE);
        assert_eq!(write_parquet(&samples, &dest).unwrap(), 3);

        let reader = SerializedFileReader::new(File::open(&dest).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 3);
        let rows: Vec<Vec<(String, Field)>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().into_columns())
            .collect();
        let names: Vec<&str> = rows[0].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, THREE_SAMPLES_HEADER);
        let cell = |row: usize, col: usize| rows[row][col].1.clone();
        assert_eq!(cell(0, 0), Field::Str("q1".into()));
        assert_eq!(cell(1, 1), Field::Long(1));
        assert_eq!(cell(0, 2), Field::Str("geography".into()));
        assert_eq!(cell(1, 2), Field::Null);
        assert_eq!(cell(0, 4), Field::Str("Paris, of course".into()));
        assert_eq!(cell(1, 4), Field::Str(r#"["4",null]"#.into()));
        assert_eq!(
            (cell(0, 9), cell(0, 10)),
            (Field::Double(0.0), Field::Double(0.5))
        );
        assert_eq!((cell(1, 9), cell(1, 10)), (Field::Double(1.0), Field::Null));
        assert_eq!(
            (cell(2, 7), cell(2, 8)),
            (Field::Long(1), Field::Bool(true))
        );
        assert_eq!((cell(2, 9), cell(2, 10)), (Field::Null, Field::Null));
        assert_eq!(cell(2, 13), Field::Null);
    }

    #[test]
    fn row_groups_bound_memory_and_keep_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let one = std::fs::read_to_string(three_samples(dir.path())).unwrap();
        let line = one.lines().next().unwrap();
        let many = format!("{line}\n").repeat(ROW_GROUP + 5);
        let samples = dir.path().join("many.jsonl");
        std::fs::write(&samples, many).unwrap();
        let dest = dir.path().join(PARQUET_FILE);
        assert_eq!(
            write_parquet(&samples, &dest).unwrap(),
            (ROW_GROUP + 5) as u64
        );
        let reader = SerializedFileReader::new(File::open(&dest).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        assert_eq!(
            reader.metadata().file_metadata().num_rows(),
            (ROW_GROUP + 5) as i64
        );
    }
}
