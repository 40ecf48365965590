//! Seeded random inputs for the property tests of every parser of untrusted text: the same cases on every
//! run (a failure names its seed and input), many shapes per run. Hand-written rather than a fuzzing
//! crate: the properties are "never panics" and a few round trips, which need only varied input.

use serde_json::{Map, Value, json};

/// A seeded generator.
pub struct Gen(fastrand::Rng);

/// How many cases each property runs.
pub const CASES: usize = 2_000;

impl Gen {
    /// Seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Gen(fastrand::Rng::with_seed(seed))
    }

    /// A random choice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.0.usize(..items.len())]
    }

    /// Text made of `alphabet` fragments and random characters, up to `max` pieces.
    pub fn text(&mut self, alphabet: &[&str], max: usize) -> String {
        let pieces = self.0.usize(..=max);
        (0..pieces)
            .map(|_| match self.0.u8(..10) {
                0 => self.0.char(..).to_string(),
                1 => "9".repeat(self.0.usize(..40)),
                _ => self.pick(alphabet).to_string(),
            })
            .collect()
    }

    /// A number of any size or kind JSON allows (and some it barely does).
    pub fn number(&mut self) -> Value {
        match self.0.u8(..6) {
            0 => json!(self.0.i64(..)),
            1 => json!(i64::MAX),
            2 => json!(i64::MIN),
            3 => json!(self.0.f64() * 1e300),
            4 => json!(u64::MAX),
            _ => json!(self.0.i32(..)),
        }
    }

    /// Any JSON value, nested up to `depth`, with keys from `keys` so that the parser's fields are hit.
    pub fn json(&mut self, keys: &[&str], depth: usize) -> Value {
        match self.0.u8(..if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.0.bool()),
            2 => self.number(),
            3 => json!(self.text(&["a", "ACTIVE", "-", "2026-01-01T00:00:00Z", "/", "x"], 6)),
            4 => json!(self.text(&["https://", "evil.example", "/api", "?", "//"], 5)),
            5 => Value::Array((0..self.0.usize(..4)).map(|_| self.json(keys, depth - 1)).collect()),
            _ => {
                let mut map = Map::new();
                for _ in 0..self.0.usize(..keys.len().max(1) + 2) {
                    let key = if self.0.bool() {
                        self.pick(keys).to_string()
                    } else {
                        self.text(&["k", "_"], 2)
                    };
                    map.insert(key, self.json(keys, depth - 1));
                }
                Value::Object(map)
            }
        }
    }
}
