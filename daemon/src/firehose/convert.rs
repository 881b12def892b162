//! Record format conversion: JSON records to Apache Parquet, as Firehose's
//! `DataFormatConversionConfiguration` does with an OpenX JSON deserializer and a Parquet
//! serializer. Firehose takes the schema from an AWS Glue table; here the tables are in a file
//! (`--firehose-glue-tables`): `{"DATABASE": {"TABLE": [{"Name": "id", "Type": "int"}, …]}}`,
//! with Hive's primitive types (string, varchar, char, tinyint, smallint, int, bigint, float,
//! double, boolean, timestamp, date). One Parquet file per object (one row group), each column
//! optional; a record that is not a JSON object or has a value its column's type cannot take is
//! not written and goes under the error prefix (`format-conversion-failed`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use serde_json::{Map, Value};

use crate::catalog::firehose::{Conversion, ParquetCompression};

/// A column's type, as Parquet stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    BigInt,
    Float,
    Double,
    Boolean,
    /// Milliseconds since the epoch, UTC.
    Timestamp,
    /// Days since the epoch.
    Date,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
}

/// The columns of `database.table` in the tables file at `path`.
pub fn table_columns(path: &Path, database: &str, table: &str) -> Result<Vec<Column>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading the tables file {}: {e}", path.display()))?;
    let tables: Value = serde_json::from_str(&text).map_err(|e| format!("the tables file {} is not JSON: {e}", path.display()))?;
    let columns = tables
        .get(database)
        .and_then(|tables| tables.get(table))
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the tables file {} has no table {database}.{table}", path.display()))?;
    let mut out = Vec::with_capacity(columns.len());
    for column in columns {
        let name = column.get("Name").and_then(Value::as_str).ok_or_else(|| format!("{database}.{table}: a column has no Name"))?;
        let kind = column.get("Type").and_then(Value::as_str).ok_or_else(|| format!("{database}.{table}.{name} has no Type"))?;
        let kind = column_type(kind).ok_or_else(|| {
            format!("{database}.{table}.{name}: type {kind} is not supported by this server (Hive's primitive types are, but decimal)")
        })?;
        if name.is_empty() || name.len() > 255 || out.iter().any(|known: &Column| known.name.eq_ignore_ascii_case(name)) {
            return Err(format!("{database}.{table}: the column name {name:?} is empty, too long or given twice"));
        }
        out.push(Column { name: name.to_owned(), kind });
    }
    if out.is_empty() {
        return Err(format!("{database}.{table} has no columns"));
    }
    Ok(out)
}

fn column_type(text: &str) -> Option<ColumnType> {
    let text = text.trim().to_ascii_lowercase();
    let base = text.split('(').next().unwrap_or_default();
    Some(match base {
        "string" | "varchar" | "char" => ColumnType::String,
        "tinyint" | "smallint" | "int" | "integer" => ColumnType::Int,
        "bigint" => ColumnType::BigInt,
        "float" => ColumnType::Float,
        "double" => ColumnType::Double,
        "boolean" => ColumnType::Boolean,
        "timestamp" => ColumnType::Timestamp,
        "date" => ColumnType::Date,
        _ => return None,
    })
}

/// One column's values, as the writer takes them.
enum Values {
    Bytes(Vec<ByteArray>),
    Int(Vec<i32>),
    BigInt(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Boolean(Vec<bool>),
}

/// A field's value for its column: `Ok(None)` for null.
enum Field {
    Text(String),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    Boolean(bool),
}

/// Records that could not be rows, each with why.
pub type Refused = Vec<(Bytes, String)>;

/// The records as one Parquet file, and those that could not be rows.
pub fn to_parquet(records: &[Bytes], columns: &[Column], conversion: &Conversion) -> Result<(Vec<u8>, Refused), String> {
    let mut failed = Vec::new();
    let mut rows: Vec<Vec<Option<Field>>> = Vec::with_capacity(records.len());
    for record in records {
        match row(record, columns, conversion) {
            Ok(row) => rows.push(row),
            Err(why) => failed.push((record.clone(), why)),
        }
    }
    let schema = message_type(columns);
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&schema).map_err(|e| format!("the Parquet schema: {e}"))?);
    let compression = match conversion.compression {
        ParquetCompression::Snappy => parquet::basic::Compression::SNAPPY,
        ParquetCompression::Gzip => parquet::basic::Compression::GZIP(Default::default()),
        ParquetCompression::Uncompressed => parquet::basic::Compression::UNCOMPRESSED,
    };
    let properties = Arc::new(WriterProperties::builder().set_compression(compression).set_created_by("Sluice Firehose".into()).build());
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, properties).map_err(|e| e.to_string())?;
    let mut group = writer.next_row_group().map_err(|e| e.to_string())?;
    let mut at = 0;
    while let Some(mut column) = group.next_column().map_err(|e| e.to_string())? {
        let mut definitions = Vec::with_capacity(rows.len());
        let mut values = match columns[at].kind {
            ColumnType::String => Values::Bytes(Vec::new()),
            ColumnType::Int | ColumnType::Date => Values::Int(Vec::new()),
            ColumnType::BigInt | ColumnType::Timestamp => Values::BigInt(Vec::new()),
            ColumnType::Float => Values::Float(Vec::new()),
            ColumnType::Double => Values::Double(Vec::new()),
            ColumnType::Boolean => Values::Boolean(Vec::new()),
        };
        for row in &mut rows {
            let field = row[at].take();
            definitions.push(i16::from(field.is_some()));
            match (&mut values, field) {
                (_, None) => {}
                (Values::Bytes(out), Some(Field::Text(text))) => out.push(ByteArray::from(text.into_bytes())),
                (Values::Int(out), Some(Field::Int(value))) => out.push(value),
                (Values::BigInt(out), Some(Field::BigInt(value))) => out.push(value),
                (Values::Float(out), Some(Field::Float(value))) => out.push(value),
                (Values::Double(out), Some(Field::Double(value))) => out.push(value),
                (Values::Boolean(out), Some(Field::Boolean(value))) => out.push(value),
                _ => return Err("a field of another type than its column's (a bug)".into()),
            }
        }
        let levels = Some(definitions.as_slice());
        let written = match &values {
            Values::Bytes(values) => column.typed::<ByteArrayType>().write_batch(values, levels, None),
            Values::Int(values) => column.typed::<Int32Type>().write_batch(values, levels, None),
            Values::BigInt(values) => column.typed::<Int64Type>().write_batch(values, levels, None),
            Values::Float(values) => column.typed::<FloatType>().write_batch(values, levels, None),
            Values::Double(values) => column.typed::<DoubleType>().write_batch(values, levels, None),
            Values::Boolean(values) => column.typed::<BoolType>().write_batch(values, levels, None),
        };
        written.map_err(|e| e.to_string())?;
        column.close().map_err(|e| e.to_string())?;
        at += 1;
    }
    group.close().map_err(|e| e.to_string())?;
    let out = writer.into_inner().map_err(|e| e.to_string())?;
    Ok((out, failed))
}

/// The Parquet schema of the columns, each optional.
fn message_type(columns: &[Column]) -> String {
    let mut schema = String::from("message schema {\n");
    for column in columns {
        let kind = match column.kind {
            ColumnType::String => "BYTE_ARRAY",
            ColumnType::Int => "INT32",
            ColumnType::Date => "INT32",
            ColumnType::BigInt | ColumnType::Timestamp => "INT64",
            ColumnType::Float => "FLOAT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN",
        };
        let annotation = match column.kind {
            ColumnType::String => " (UTF8)",
            ColumnType::Date => " (DATE)",
            ColumnType::Timestamp => " (TIMESTAMP(MILLIS,true))",
            _ => "",
        };
        // The schema parser takes a name up to white space or punctuation: other characters
        // are written as `_` (`parquet_name`).
        schema.push_str(&format!("  OPTIONAL {kind} {}{annotation};\n", parquet_name(&column.name)));
    }
    schema.push('}');
    schema
}

fn parquet_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// A record's fields in column order.
fn row(record: &[u8], columns: &[Column], conversion: &Conversion) -> Result<Vec<Option<Field>>, String> {
    let value: Value = serde_json::from_slice(record).map_err(|e| format!("the record is not JSON: {e}"))?;
    let object = value.as_object().ok_or("the record is not a JSON object")?;
    columns
        .iter()
        .map(|column| {
            let found = lookup(object, &column.name, conversion);
            field(found, column.kind).map_err(|why| format!("column {}: {why}", column.name))
        })
        .collect()
}

/// The value of `column` in `object`: by its mapped key, else its name (ignoring case unless
/// `CaseInsensitive` is false; dots in keys read as underscores when configured).
fn lookup<'a>(object: &'a Map<String, Value>, column: &str, conversion: &Conversion) -> Option<&'a Value> {
    let key = conversion.key_mappings.get(column).map_or(column, String::as_str);
    if let Some(found) = object.get(key) {
        return Some(found);
    }
    let matches = |candidate: &str| {
        let candidate: std::borrow::Cow<'_, str> =
            if conversion.dots_to_underscores { candidate.replace('.', "_").into() } else { candidate.into() };
        if conversion.case_insensitive {
            candidate.eq_ignore_ascii_case(key)
        } else {
            candidate == key
        }
    };
    object.iter().find(|(candidate, _)| matches(candidate)).map(|(_, value)| value)
}

fn field(value: Option<&Value>, kind: ColumnType) -> Result<Option<Field>, String> {
    let Some(value) = value.filter(|value| !value.is_null()) else { return Ok(None) };
    let number = |value: &Value| -> Option<f64> {
        match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    };
    let integer = |value: &Value| -> Option<i64> {
        match value {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    };
    let refused = || format!("{value} is not a {kind:?}");
    Ok(Some(match kind {
        ColumnType::String => Field::Text(match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }),
        ColumnType::Int => Field::Int(integer(value).and_then(|n| i32::try_from(n).ok()).ok_or_else(refused)?),
        ColumnType::BigInt => Field::BigInt(integer(value).ok_or_else(refused)?),
        ColumnType::Float => Field::Float(number(value).ok_or_else(refused)? as f32),
        ColumnType::Double => Field::Double(number(value).ok_or_else(refused)?),
        ColumnType::Boolean => Field::Boolean(match value {
            Value::Bool(flag) => *flag,
            Value::String(text) if text.eq_ignore_ascii_case("true") => true,
            Value::String(text) if text.eq_ignore_ascii_case("false") => false,
            _ => return Err(refused()),
        }),
        ColumnType::Timestamp => Field::BigInt(match value {
            // Numbers are milliseconds since the epoch.
            Value::Number(number) => number.as_i64().ok_or_else(refused)?,
            Value::String(text) => {
                let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| refused())?;
                time.duration_since(std::time::UNIX_EPOCH).map_err(|_| refused())?.as_millis() as i64
            }
            _ => return Err(refused()),
        }),
        ColumnType::Date => Field::Int(match value {
            Value::String(text) => {
                let time = humantime::parse_rfc3339_weak(&format!("{} 00:00:00", text.trim())).map_err(|_| refused())?;
                (time.duration_since(std::time::UNIX_EPOCH).map_err(|_| refused())?.as_secs() / 86_400) as i32
            }
            _ => return Err(refused()),
        }),
    }))
}

/// Reads back a Parquet file's rows as JSON objects (for tests and checks).
pub fn rows_of(data: Vec<u8>) -> Result<Vec<BTreeMap<String, String>>, String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(Bytes::from(data)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in reader.get_row_iter(None).map_err(|e| e.to_string())? {
        let row = row.map_err(|e| e.to_string())?;
        out.push(row.get_column_iter().map(|(name, field)| (name.clone(), field.to_string())).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion() -> Conversion {
        Conversion {
            database: "d".into(),
            table: "t".into(),
            compression: ParquetCompression::Snappy,
            case_insensitive: true,
            dots_to_underscores: true,
            key_mappings: BTreeMap::from([("renamed".to_owned(), "original".to_owned())]),
            configuration: Value::Null,
        }
    }

    #[test]
    fn json_records_become_parquet_rows_and_bad_ones_are_set_aside() {
        let columns = [
            Column { name: "id".into(), kind: ColumnType::BigInt },
            Column { name: "name".into(), kind: ColumnType::String },
            Column { name: "score".into(), kind: ColumnType::Double },
            Column { name: "ok".into(), kind: ColumnType::Boolean },
            Column { name: "at".into(), kind: ColumnType::Timestamp },
            Column { name: "a_b".into(), kind: ColumnType::Int },
            Column { name: "renamed".into(), kind: ColumnType::String },
        ];
        let records = [
            Bytes::from(r#"{"ID": 1, "name": "x", "score": 1.5, "ok": true, "at": "2026-12-07T13:45:29Z", "a.b": 3, "original": "o"}"#),
            Bytes::from(r#"{"id": "2", "score": null}"#),
            Bytes::from(r#"{"id": "two"}"#),
            Bytes::from("not json"),
        ];
        let (file, failed) = to_parquet(&records, &columns, &conversion()).unwrap();
        assert_eq!(&file[..4], b"PAR1");
        assert_eq!(failed.len(), 2);
        assert!(failed[0].1.contains("column id"), "{:?}", failed[0].1);
        let rows = rows_of(file).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["id"], "1");
        assert_eq!(rows[0]["name"], "\"x\"");
        assert_eq!(rows[0]["a_b"], "3");
        assert_eq!(rows[0]["renamed"], "\"o\"");
        assert_eq!(rows[1]["id"], "2");
        assert_eq!(rows[1]["score"], "null");
    }

    #[test]
    fn tables_are_read_with_hives_primitive_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tables.json");
        std::fs::write(
            &path,
            r#"{"web": {"clicks": [{"Name": "id", "Type": "bigint"}, {"Name": "page", "Type": "varchar(200)"}],
            "bad": [{"Name": "m", "Type": "map<string,int>"}]}}"#,
        )
        .unwrap();
        let columns = table_columns(&path, "web", "clicks").unwrap();
        assert_eq!(columns[1], Column { name: "page".into(), kind: ColumnType::String });
        assert!(table_columns(&path, "web", "bad").unwrap_err().contains("map<string,int> is not supported"));
        assert!(table_columns(&path, "web", "nope").unwrap_err().contains("no table web.nope"));
    }
}
