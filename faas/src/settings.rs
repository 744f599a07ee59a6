//! A function's configuration entries (`rime deploy --env KEY=VALUE
//! --secret KEY=@FILE`): set at deploy time, stored with the function,
//! read by the guest through the `config_get` import (`docs/abi.md`).
//!
//! A secret differs from a plain entry only in how it is shown: its value
//! never appears in `Debug` output, [`Setting::shown`], errors or logs.

use crate::error::DeployError;
use rime_abi::{MAX_CONFIG_ENTRIES, MAX_CONFIG_VALUE_LEN, valid_config_key};
use std::fmt;

/// How a secret's value is shown wherever it would be printed.
pub const SECRET_SHOWN: &str = "<secret>";

/// One configuration entry.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    /// `[A-Za-z_][A-Za-z0-9_]*`, at most `MAX_CONFIG_KEY_LEN` bytes.
    pub key: String,
    /// At most `MAX_CONFIG_VALUE_LEN` bytes.
    pub value: Vec<u8>,
    /// Never shown: `KEY=<secret>`.
    pub secret: bool,
}

impl Setting {
    pub fn plain(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Setting {
        Setting {
            key: key.into(),
            value: value.into(),
            secret: false,
        }
    }

    pub fn secret(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Setting {
        Setting {
            secret: true,
            ..Setting::plain(key, value)
        }
    }

    /// `KEY=value` (lossy UTF-8), or `KEY=<secret>`.
    pub fn shown(&self) -> String {
        if self.secret {
            format!("{}={SECRET_SHOWN}", self.key)
        } else {
            format!("{}={}", self.key, String::from_utf8_lossy(&self.value))
        }
    }

    /// The stored form: a kind byte (`0` plain, `1` secret), then the value.
    pub(crate) fn encode_value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + self.value.len());
        v.push(u8::from(self.secret));
        v.extend_from_slice(&self.value);
        v
    }

    /// The entry of `key` from its stored form; `None` if damaged.
    pub(crate) fn decode(key: String, stored: &[u8]) -> Option<Setting> {
        let (&kind, value) = stored.split_first()?;
        (kind <= 1).then(|| Setting {
            key,
            value: value.to_vec(),
            secret: kind == 1,
        })
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

/// Deploy-time checks: keys valid and distinct, sizes and count bounded.
/// The error names the key, never the value.
pub(crate) fn check(settings: &[Setting]) -> Result<(), DeployError> {
    if settings.len() > MAX_CONFIG_ENTRIES {
        return Err(DeployError::BadSetting(format!(
            "{} entries, at most {MAX_CONFIG_ENTRIES}",
            settings.len()
        )));
    }
    for (i, s) in settings.iter().enumerate() {
        if !valid_config_key(s.key.as_bytes()) {
            return Err(DeployError::BadSetting(format!(
                "key {:?}: use [A-Za-z_][A-Za-z0-9_]*, at most {} bytes",
                s.key,
                rime_abi::MAX_CONFIG_KEY_LEN
            )));
        }
        if settings[..i].iter().any(|o| o.key == s.key) {
            return Err(DeployError::BadSetting(format!(
                "key {:?} given twice",
                s.key
            )));
        }
        if s.value.len() > MAX_CONFIG_VALUE_LEN {
            return Err(DeployError::BadSetting(format!(
                "the value of {:?} is {} bytes, at most {MAX_CONFIG_VALUE_LEN}",
                s.key,
                s.value.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_shown() {
        let s = Setting::secret("TOKEN", "hunter2");
        assert_eq!(s.shown(), "TOKEN=<secret>");
        assert_eq!(format!("{s:?}"), "TOKEN=<secret>");
        assert_eq!(Setting::plain("A", "b").shown(), "A=b");
        let too_big = Setting::secret("TOKEN", vec![b'x'; MAX_CONFIG_VALUE_LEN + 1]);
        let e = check(&[too_big]).unwrap_err().to_string();
        assert!(e.contains("\"TOKEN\"") && !e.contains("xxx"), "{e}");
    }

    #[test]
    fn stored_form_round_trips_and_rejects_damage() {
        for s in [Setting::plain("A", "1"), Setting::secret("B", "")] {
            assert_eq!(Setting::decode(s.key.clone(), &s.encode_value()), Some(s));
        }
        assert_eq!(Setting::decode("A".into(), &[]), None);
        assert_eq!(Setting::decode("A".into(), &[7, b'x']), None);
    }

    #[test]
    fn bad_keys_and_duplicates_are_refused() {
        for (settings, want) in [
            (vec![Setting::plain("1X", "")], "key \"1X\""),
            (
                vec![Setting::plain("A", ""), Setting::secret("A", "")],
                "given twice",
            ),
        ] {
            let e = check(&settings).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let many: Vec<_> = (0..=MAX_CONFIG_ENTRIES)
            .map(|i| Setting::plain(format!("K{i}"), ""))
            .collect();
        assert!(check(&many).unwrap_err().to_string().contains("at most 64"));
    }
}
