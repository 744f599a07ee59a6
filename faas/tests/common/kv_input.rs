//! The `kv` guest's input, built op by op (its format, and the responses:
//! `guests/examples/kv/src/lib.rs`). All ops of one input run as one
//! transaction.

/// An input for the `kv` guest.
#[derive(Default, Clone, Debug)]
pub struct KvInput(Vec<u8>);

impl KvInput {
    pub fn new() -> KvInput {
        KvInput::default()
    }

    /// `get key`: answers `0x00`, or `0x01 len:u32 value`.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.op(b'g', key.as_ref())
    }

    /// `put key value`: no answer.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        self.op(b'p', key.as_ref()).value(value.as_ref())
    }

    /// `delete key`: no answer.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.op(b'd', key.as_ref())
    }

    /// `add key delta`: answers the new value, `i64`.
    pub fn add(&mut self, key: impl AsRef<[u8]>, delta: i64) -> &mut Self {
        self.op(b'a', key.as_ref());
        self.0.extend_from_slice(&delta.to_le_bytes());
        self
    }

    /// `scan from limit`: answers `count:u32`, then `count` entries
    /// (`len:u16 key len:u32 value`) with keys `>= from`, ascending.
    pub fn scan(&mut self, from: impl AsRef<[u8]>, limit: u32) -> &mut Self {
        self.op(b's', from.as_ref());
        self.0.extend_from_slice(&limit.to_le_bytes());
        self
    }

    /// The encoded input.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }

    fn op(&mut self, op: u8, key: &[u8]) -> &mut Self {
        self.0.push(op);
        push_key(&mut self.0, key);
        self
    }

    fn value(&mut self, value: &[u8]) -> &mut Self {
        push_value(&mut self.0, value);
        self
    }
}

/// `len:u16 key`, as inputs and scan answers carry keys.
pub fn push_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
}

/// `len:u32 value`, as inputs and answers carry values.
pub fn push_value(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}
