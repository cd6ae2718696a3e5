//! Parquet datasets for the end-to-end tests, written with the `parquet`
//! crate as a Hugging Face dataset repository holds them: string columns
//! and a list column `choices`, snappy pages.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// One row of a question/answer dataset with choices.
pub struct QaRow {
    pub id: String,
    pub question: String,
    pub answer: String,
    pub subset: String,
    pub choices: Vec<String>,
}

impl QaRow {
    /// Row `i`: `What is i plus i?`, answered `2i`, among three choices.
    pub fn numbered(prefix: &str, i: usize) -> QaRow {
        QaRow {
            id: format!("{prefix}{i}"),
            question: format!("What is {i} plus {i}?"),
            answer: (2 * i).to_string(),
            subset: if i.is_multiple_of(2) { "even" } else { "odd" }.to_string(),
            choices: vec![(2 * i).to_string(), (2 * i + 1).to_string(), "none".into()],
        }
    }
}

/// Writes `rows` as one Parquet file of one row group.
pub fn write_qa_parquet(path: &Path, rows: &[QaRow]) {
    let schema = parse_message_type(
        "message row {
            required binary id (UTF8);
            required binary question (UTF8);
            required binary answer (UTF8);
            required binary subset (UTF8);
            optional group choices (LIST) {
                repeated group list { required binary element (UTF8); }
            }
        }",
    )
    .expect("schema");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).expect("create parquet file");
    let mut writer =
        SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).expect("writer");
    let mut group = writer.next_row_group().expect("row group");
    let texts: [fn(&QaRow) -> &str; 4] = [|r| &r.id, |r| &r.question, |r| &r.answer, |r| &r.subset];
    let mut column = 0;
    while let Some(mut col) = group.next_column().expect("column") {
        let writer = col.typed::<ByteArrayType>();
        if let Some(text) = texts.get(column) {
            let values: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(text(r))).collect();
            writer.write_batch(&values, None, None).expect("write");
        } else {
            // A list: definition level 2 for an element, 1 for an empty
            // list; repetition level 1 for every element after a row's
            // first.
            let (mut values, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
            for row in rows {
                for (i, choice) in row.choices.iter().enumerate() {
                    values.push(ByteArray::from(choice.as_str()));
                    defs.push(2);
                    reps.push(i16::from(i > 0));
                }
                if row.choices.is_empty() {
                    defs.push(1);
                    reps.push(0);
                }
            }
            writer
                .write_batch(&values, Some(&defs), Some(&reps))
                .expect("write list");
        }
        col.close().expect("close column");
        column += 1;
    }
    group.close().expect("close row group");
    writer.close().expect("close file");
}

/// A sharded dataset folder as the Hub has them:
/// `test-0000K-of-0000N.parquet`, `per_shard` rows each, ids `sK-i`.
pub fn write_parquet_shards(dir: &Path, shards: usize, per_shard: usize) {
    std::fs::create_dir_all(dir).expect("create shard folder");
    for k in 0..shards {
        // Questions numbered across the shards, so that no two rows ask
        // the same (and share one request); ids numbered within each.
        let rows: Vec<QaRow> = (0..per_shard)
            .map(|i| QaRow {
                id: format!("s{k}-{i}"),
                ..QaRow::numbered("", k * per_shard + i)
            })
            .collect();
        let name = format!("test-{k:05}-of-{shards:05}.parquet");
        write_qa_parquet(&dir.join(name), &rows);
    }
}

/// The ids of `write_parquet_shards(_, shards, per_shard)`'s rows, as a
/// folder or glob of the shards names them.
pub fn shard_ids(shards: usize, per_shard: usize) -> Vec<String> {
    (0..shards)
        .flat_map(|k| {
            (0..per_shard).map(move |i| format!("test-{k:05}-of-{shards:05}.parquet/s{k}-{i}"))
        })
        .collect()
}
