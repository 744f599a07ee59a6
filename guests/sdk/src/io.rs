//! Input, output, logging, and the body of the `rime_invoke` export.

use crate::abi::{self, Level, MAX_LOG_LEN, MAX_OUTPUT_LEN};
use crate::error::Error;
use crate::raw;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// The invocation's input.
pub fn input() -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    // The first call asks for the length; the input never changes, so the
    // second one fits.
    for _ in 0..2 {
        let code = raw::input(&mut buf);
        Error::check(code)?;
        let n = code as usize; // non-negative i32: lossless
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf = vec![0; n];
    }
    Err(Error::Protocol)
}

/// The function's configuration entry `key`, set at deploy time
/// (`rime deploy ... --env KEY=VALUE --secret KEY=@FILE`); `None` if it
/// has none (or `key` is not `[A-Za-z_][A-Za-z0-9_]*`).
pub fn config(key: &str) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    // As for `input`: the first call asks for the length, the second fits.
    for _ in 0..2 {
        let code = raw::config_get(key.as_bytes(), &mut buf);
        let n = usize::try_from(code).ok()?; // negative: absent or invalid
        if n <= buf.len() {
            buf.truncate(n);
            return Some(buf);
        }
        buf = vec![0; n];
    }
    None
}

/// [`config`] as text; `None` also if the value is not UTF-8.
pub fn config_str(key: &str) -> Option<String> {
    String::from_utf8(config(key)?).ok()
}

/// Sets the invocation's output (the last call wins).
pub fn output(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() > MAX_OUTPUT_LEN {
        return Err(Error::OutputTooLarge);
    }
    Error::check(raw::output(bytes))
}

/// Logs `msg` at `level`, truncated to [`MAX_LOG_LEN`] bytes.
pub fn log(level: Level, msg: &str) {
    raw::log(level as i32, truncate(msg, MAX_LOG_LEN).as_bytes());
}

/// Formats and logs without allocating (used by [`log!`](crate::log!) and
/// the panic handler, which must work when the heap is exhausted).
pub fn log_fmt(level: Level, args: fmt::Arguments<'_>) {
    let mut msg = StackText::<MAX_LOG_LEN>::new();
    let _ = msg.write_fmt(args); // only fails by truncating, which is fine
    raw::log(level as i32, msg.as_bytes());
}

/// `s` cut to at most `max` bytes at a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A fixed-capacity text buffer on the stack that keeps what fits.
pub(crate) struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    pub(crate) const fn new() -> Self {
        StackText {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let part = truncate(s, room);
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part.as_bytes());
        self.len += part.len();
        if part.len() < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The body of the `rime_invoke` export that `#[faaslet]` generates: read
/// the input, run `f`, write its output (or its error's text) and return the
/// ABI result code.
pub fn run<E: fmt::Display>(f: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>) -> i32 {
    let input = match input() {
        Ok(input) => input,
        Err(e) => return fail(format_args!("reading input: {e}")),
    };
    match f(&input) {
        Ok(out) => match output(&out) {
            Ok(()) => abi::RESULT_OK,
            Err(e) => fail(format_args!("writing {} bytes of output: {e}", out.len())),
        },
        Err(e) => fail(format_args!("{e}")),
    }
}

/// Makes `msg` the output and returns `RESULT_ERROR` (nothing commits).
fn fail(msg: fmt::Arguments<'_>) -> i32 {
    let mut text = String::new();
    let _ = text.write_fmt(msg); // a Display impl may fail; keep what it wrote
    let _ = output(truncate(&text, MAX_OUTPUT_LEN).as_bytes()); // fits: truncated to the limit
    abi::RESULT_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn stack_text_keeps_what_fits() {
        let mut t = StackText::<4>::new();
        assert!(write!(t, "ab{}", 123).is_err());
        assert_eq!(t.as_bytes(), b"ab12");
    }
}
