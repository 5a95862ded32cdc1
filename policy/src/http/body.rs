//! The JSON request body, as rule conditions read it. Duplicate keys are
//! refused: the target might read the other copy than the one decided.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::compile::{BodyCond, CmpOp};
use super::jsonpath::{Elem, JsonPath};
use super::path::wildcard;

/// A JSON value parsed with duplicate keys refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(k, v).is_some() {
                return Err(serde::de::Error::custom("duplicate key"));
            }
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// Parses a request body for conditions; `None` when it is not JSON (or
/// repeats a key).
pub(crate) fn parse(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Strict>(body).ok().map(|s| s.0)
}

/// The value at a definite path.
fn lookup<'a>(v: &'a Value, path: &JsonPath) -> Option<&'a Value> {
    let mut at = v;
    for e in path.elems()? {
        at = match (e, at) {
            (Elem::Key(k), Value::Object(m)) => m.get(&k)?,
            (Elem::Index(i), Value::Array(a)) => a.get(usize::try_from(i).ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Whether the body meets the condition.
pub(crate) fn holds(body: &Value, path: &JsonPath, cond: &BodyCond) -> bool {
    let Some(v) = lookup(body, path) else {
        return false;
    };
    match cond {
        BodyCond::Present => true,
        BodyCond::Cmp(op, bound) => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                // A target may well read "150" as 150.
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.is_some_and(|n| match op {
                CmpOp::Gt => n > *bound,
                CmpOp::Ge => n >= *bound,
                CmpOp::Lt => n < *bound,
                CmpOp::Le => n <= *bound,
            })
        }
        BodyCond::Glob(p) => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) | Value::Null => v.to_string(),
                Value::Array(_) | Value::Object(_) => return false,
            };
            wildcard(p.as_bytes(), text.as_bytes())
        }
    }
}
