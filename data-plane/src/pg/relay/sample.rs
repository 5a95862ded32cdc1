//! The bounded sample of a result that a statement's record keeps: the
//! first rows exactly as the client received them (so, after masking), up
//! to the policy's row and byte limits. Pure: fed server messages, it
//! returns the proto message; nothing is kept past the limits.

use sluice_policy::model::SampleLimit;
use sluice_proto::v1;

use crate::pg::mask::wire;

/// What a sample has gathered so far.
#[derive(Debug, Clone)]
pub struct Sample {
    limit: SampleLimit,
    columns: Vec<String>,
    rows: Vec<v1::SampleRow>,
    bytes: usize,
    truncated: bool,
}

impl Sample {
    /// An empty sample bounded by `limit`.
    pub fn new(limit: SampleLimit) -> Self {
        Self {
            limit,
            columns: Vec::new(),
            rows: Vec::new(),
            bytes: 0,
            truncated: false,
        }
    }

    /// Takes the column names of a RowDescription.
    pub fn on_row_description(&mut self, body: &[u8]) {
        if let Ok(fields) = wire::row_description(body) {
            self.columns = fields.into_iter().map(|f| f.name).collect();
        }
    }

    /// Keeps a DataRow if it fits, else notes that the sample is cut.
    pub fn on_data_row(&mut self, body: &[u8]) {
        if self.truncated {
            return;
        }
        let Ok(values) = wire::data_row(body) else {
            return;
        };
        let size: usize = values.iter().flatten().map(|v| v.len()).sum();
        let limit_bytes = usize::try_from(self.limit.bytes).unwrap_or(usize::MAX);
        if self.rows.len() >= self.limit.rows as usize || self.bytes + size > limit_bytes {
            self.truncated = true;
            return;
        }
        self.bytes += size;
        self.rows.push(v1::SampleRow {
            values: values
                .into_iter()
                .map(|v| v1::SampleValue {
                    text: v.map(text_of),
                })
                .collect(),
        });
    }

    /// The sample for the record; `None` if the result had no rows or
    /// columns to show.
    pub fn to_proto(&self) -> Option<v1::ResultSample> {
        (!self.rows.is_empty() || !self.columns.is_empty() || self.truncated).then(|| {
            v1::ResultSample {
                columns: self.columns.clone(),
                rows: self.rows.clone(),
                truncated: self.truncated,
            }
        })
    }
}

/// A value as text, or a description of one that is not (binary format).
pub(crate) fn text_of(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s)
            if !s
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
        {
            s.to_owned()
        }
        _ => format!("<{} bytes, binary>", v.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        wire::encode_data_row(values.iter().copied())
    }

    fn texts(s: &v1::ResultSample) -> Vec<Vec<Option<String>>> {
        s.rows
            .iter()
            .map(|r| r.values.iter().map(|v| v.text.clone()).collect())
            .collect()
    }

    #[test]
    fn keeps_rows_until_either_limit_and_says_it_was_cut() {
        let mut s = Sample::new(SampleLimit {
            rows: 2,
            bytes: 100,
        });
        s.on_data_row(&row(&[Some(b"a***@example.com"), None]));
        s.on_data_row(&row(&[Some(b"2"), Some(b"x")]));
        s.on_data_row(&row(&[Some(b"3"), Some(b"y")]));
        let out = s.to_proto().unwrap();
        assert_eq!(
            texts(&out),
            vec![
                vec![Some("a***@example.com".to_owned()), None],
                vec![Some("2".to_owned()), Some("x".to_owned())],
            ]
        );
        assert!(out.truncated);

        let mut s = Sample::new(SampleLimit {
            rows: 100,
            bytes: 5,
        });
        s.on_data_row(&row(&[Some(b"abc")]));
        s.on_data_row(&row(&[Some(b"def")]));
        let out = s.to_proto().unwrap();
        assert_eq!(out.rows.len(), 1);
        assert!(out.truncated);
    }

    #[test]
    fn binary_values_are_described_and_malformed_rows_ignored() {
        let mut s = Sample::new(SampleLimit::default());
        s.on_data_row(&row(&[Some(&[0, 0, 0, 7])]));
        s.on_data_row(b"\x00\x05garbage");
        let out = s.to_proto().unwrap();
        assert_eq!(
            texts(&out),
            vec![vec![Some("<4 bytes, binary>".to_owned())]]
        );
        assert!(Sample::new(SampleLimit::default()).to_proto().is_none());
    }
}
