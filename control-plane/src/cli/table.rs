//! Plain-text tables for people at a terminal.

use serde_json::Value;

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One object as `field  value` lines.
pub fn record(v: &Value, fields: &[&str]) -> String {
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    fields
        .iter()
        .filter(|f| !v[**f].is_null() || **f != "key")
        .map(|f| format!("{f:width$}  {}\n", cell(&v[*f])))
        .collect()
}

/// Objects as aligned columns with a header row.
pub fn rows(items: &[Value], fields: &[&str]) -> String {
    let cells: Vec<Vec<String>> = items
        .iter()
        .map(|i| fields.iter().map(|f| cell(&i[*f])).collect())
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(c, f)| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([f.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| -> String {
        let cols: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect();
        format!("{}\n", cols.join("  ").trim_end())
    };
    let mut out = line(fields.iter().map(|f| f.to_uppercase()).collect());
    for r in cells {
        out.push_str(&line(r));
    }
    if items.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligns_columns() {
        let t = rows(
            &[
                json!({"id": "a", "name": "long name"}),
                json!({"id": "bbb", "name": null}),
            ],
            &["id", "name"],
        );
        assert_eq!(t, "ID   NAME\na    long name\nbbb  -\n");
    }
}
