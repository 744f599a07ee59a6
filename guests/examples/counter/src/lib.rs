//! `counter`: increments a shared counter with the atomic `add` import.
//!
//! - Input: the counter's key (at most 512 bytes); empty means `counter`.
//!   `ns:key` counts in namespace `ns` instead of the own one; `ns` must be
//!   granted writable to the function at deploy time (e.g. a namespace
//!   `stats` shared by several functions).
//! - Configuration: `STEP`, the increment as decimal text (default 1), e.g.
//!   `rime deploy counter counter.wasm --env STEP=10`.
//! - Output: the new value as decimal text, e.g. `42`.
//! - State: `key -> i64` (8 bytes, little-endian).
//!
//! Concurrent invocations on one key conflict and are re-run by the host, so
//! every increment counts exactly once.
#![cfg_attr(not(test), no_std)]

use rime_sdk::{Error, Namespace, ToString, Vec, faaslet};

/// Key used when the input is empty.
const DEFAULT_KEY: &[u8] = b"counter";

/// Separates a namespace name from the key in the input.
const NAMESPACE_SEPARATOR: u8 = b':';

#[faaslet]
fn counter(input: &[u8]) -> Result<Vec<u8>, Error> {
    let (ns, key) = match input.iter().position(|&b| b == NAMESPACE_SEPARATOR) {
        Some(i) => {
            let name = core::str::from_utf8(&input[..i]).map_err(|_| Error::Invalid)?;
            (Namespace::open(name)?, &input[i + 1..])
        }
        None => (Namespace::OWN, input),
    };
    let key = if key.is_empty() { DEFAULT_KEY } else { key };
    let step = match rime_sdk::config_str("STEP") {
        Some(text) => text.parse::<i64>().map_err(|_| Error::Invalid)?,
        None => 1,
    };
    let value = ns.add(key, step)?;
    Ok(value.to_string().into_bytes())
}

// The mock host serves the SDK's calls on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use rime_sdk::mock;

    #[test]
    fn counts_per_key() {
        mock::reset();
        assert_eq!(mock::invoke(b"", super::rime_invoke).text(), "1");
        assert_eq!(mock::invoke(b"", super::rime_invoke).text(), "2");
        assert_eq!(mock::invoke(b"other", super::rime_invoke).text(), "1");
        mock::store(mock::OWN_NAME, b"bad", b"not eight bytes");
        let outcome = mock::invoke(b"bad", super::rime_invoke);
        assert_eq!(outcome.code, rime_sdk::abi::RESULT_ERROR);
        assert_eq!(outcome.text(), "value is not an 8-byte i64");

        mock::set_config("STEP", b"10");
        assert_eq!(mock::invoke(b"", super::rime_invoke).text(), "12");
        mock::set_config("STEP", b"ten");
        assert_eq!(
            mock::invoke(b"", super::rime_invoke).text(),
            "invalid argument"
        );
        mock::set_config("STEP", b"1");

        mock::grant("stats", true);
        assert_eq!(mock::invoke(b"stats:hits", super::rime_invoke).text(), "1");
        assert_eq!(
            mock::load("stats", b"hits"),
            Some(1i64.to_le_bytes().to_vec())
        );
        assert_eq!(
            mock::invoke(b"secret:hits", super::rime_invoke).text(),
            "namespace access denied"
        );
    }
}
