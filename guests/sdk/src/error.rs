//! The typed form of the ABI's negative result codes.

use crate::abi;
use core::fmt;

/// An error returned by a host call (or detected before making one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Key absent where one was required.
    NotFound,
    /// The namespace handle is not open.
    BadHandle,
    /// Namespace not granted, or a write to a read-only grant.
    Denied,
    /// Key or scan bound longer than [`abi::MAX_KEY_LEN`].
    KeyTooLarge,
    /// Value longer than [`abi::MAX_VALUE_LEN`].
    ValueTooLarge,
    /// Output longer than [`abi::MAX_OUTPUT_LEN`].
    OutputTooLarge,
    /// `add` on a value that is not 8 bytes long.
    NotI64,
    /// `add` would overflow `i64`.
    Overflow,
    /// Malformed argument (e.g. a bad namespace name).
    Invalid,
    /// Too many namespaces open.
    Limit,
    /// The invocation buffered too many writes.
    WriteSetFull,
    /// The host broke the ABI contract (e.g. a malformed scan record).
    Protocol,
    /// A code this SDK version does not know.
    Unknown(i32),
}

impl Error {
    /// The error for a negative ABI result code.
    pub const fn from_code(code: i32) -> Error {
        match code {
            abi::ERR_NOT_FOUND => Error::NotFound,
            abi::ERR_BAD_HANDLE => Error::BadHandle,
            abi::ERR_DENIED => Error::Denied,
            abi::ERR_KEY_TOO_LARGE => Error::KeyTooLarge,
            abi::ERR_VALUE_TOO_LARGE => Error::ValueTooLarge,
            abi::ERR_OUTPUT_TOO_LARGE => Error::OutputTooLarge,
            abi::ERR_NOT_I64 => Error::NotI64,
            abi::ERR_OVERFLOW => Error::Overflow,
            abi::ERR_INVALID => Error::Invalid,
            abi::ERR_LIMIT => Error::Limit,
            abi::ERR_WRITE_SET_FULL => Error::WriteSetFull,
            other => Error::Unknown(other),
        }
    }

    /// Turns a status result (`0` ok, negative error) into a `Result`.
    pub(crate) const fn check(code: i32) -> Result<(), Error> {
        if code >= 0 {
            Ok(())
        } else {
            Err(Error::from_code(code))
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("key not found"),
            Error::BadHandle => f.write_str("namespace handle is not open"),
            Error::Denied => f.write_str("namespace access denied"),
            Error::KeyTooLarge => write!(f, "key longer than {} bytes", abi::MAX_KEY_LEN),
            Error::ValueTooLarge => write!(f, "value longer than {} bytes", abi::MAX_VALUE_LEN),
            Error::OutputTooLarge => write!(f, "output longer than {} bytes", abi::MAX_OUTPUT_LEN),
            Error::NotI64 => f.write_str("value is not an 8-byte i64"),
            Error::Overflow => f.write_str("i64 overflow"),
            Error::Invalid => f.write_str("invalid argument"),
            Error::Limit => f.write_str("too many open namespaces"),
            Error::WriteSetFull => f.write_str("transaction write set is full"),
            Error::Protocol => f.write_str("host violated the ABI"),
            Error::Unknown(code) => write!(f, "unknown host error {code}"),
        }
    }
}

/// So `?` turns it into a `Box<dyn Error>` (or `anyhow::Error`, ...) in a
/// guest that links `std`.
impl core::error::Error for Error {}

/// So `?` works in a faaslet that returns `Result<_, String>`.
impl From<Error> for alloc::string::String {
    fn from(e: Error) -> Self {
        alloc::string::ToString::to_string(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips() {
        for code in abi::ERR_WRITE_SET_FULL..=abi::ERR_NOT_FOUND {
            assert!(
                !matches!(Error::from_code(code), Error::Unknown(_)),
                "{code}"
            );
        }
        assert_eq!(Error::from_code(-99), Error::Unknown(-99));
        assert_eq!(Error::check(0), Ok(()));
        assert_eq!(Error::check(abi::ERR_DENIED), Err(Error::Denied));
    }

    #[test]
    fn converts_into_std_errors_and_strings() {
        use alloc::string::ToString;
        fn boxed() -> Result<(), std::boxed::Box<dyn core::error::Error>> {
            Err(Error::Denied)?;
            Ok(())
        }
        fn text() -> Result<(), alloc::string::String> {
            Err(Error::NotFound)?;
            Ok(())
        }
        assert_eq!(boxed().unwrap_err().to_string(), "namespace access denied");
        assert_eq!(text().unwrap_err(), "key not found");
    }
}
