//! `bank`: accounts with i64 balances and overdraft-checked transfers.
//!
//! Input is UTF-8, words separated by spaces:
//!
//! | input | output |
//! | --- | --- |
//! | `open <account> <initial>` | `ok` (error if the account exists) |
//! | `transfer <from> <to> <amount>` | `<from balance> <to balance>` after the move |
//! | `balance <account>` | `<balance>` |
//! | `total` | sum of all balances (a scan over `acct/`) |
//!
//! Accounts are named by 1..=64 ASCII letters, digits, `-` or `_`, and
//! stored in the own namespace as `acct/<name> -> i64` (8 bytes, LE).
//! Amounts are non-negative (transfers: positive) decimal integers. A failed
//! operation (overdraft, unknown account) commits nothing.
#![cfg_attr(not(test), no_std)]

use core::fmt;
use rime_sdk::{Namespace, String, ToString, Vec, faaslet};

/// Key prefix of all accounts; `total` scans it.
const ACCOUNT_PREFIX: &[u8] = b"acct/";
/// Longest account name: keeps keys well under the ABI's 512-byte limit.
const MAX_NAME_LEN: usize = 64;

/// Why an operation was refused.
#[derive(Debug)]
enum BankError {
    Usage,
    BadName,
    BadAmount,
    SameAccount,
    NoAccount(String),
    Exists(String),
    Overdraft {
        account: String,
        balance: i64,
        amount: i64,
    },
    Overflow,
    Corrupt,
    Host(rime_sdk::Error),
}

impl From<rime_sdk::Error> for BankError {
    fn from(e: rime_sdk::Error) -> Self {
        BankError::Host(e)
    }
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankError::Usage => f.write_str(
                "usage: open <acct> <n> | transfer <from> <to> <n> | balance <acct> | total",
            ),
            BankError::BadName => {
                write!(f, "account names are 1..={MAX_NAME_LEN} of [A-Za-z0-9_-]")
            }
            BankError::BadAmount => {
                f.write_str("amount must be a non-negative integer (transfers: positive)")
            }
            BankError::SameAccount => f.write_str("cannot transfer to the same account"),
            BankError::NoAccount(a) => write!(f, "no account {a}"),
            BankError::Exists(a) => write!(f, "account {a} already exists"),
            BankError::Overdraft {
                account,
                balance,
                amount,
            } => {
                write!(
                    f,
                    "overdraft: {account} has {balance}, cannot send {amount}"
                )
            }
            BankError::Overflow => f.write_str("balance would overflow"),
            BankError::Corrupt => f.write_str("an account balance is not an 8-byte i64"),
            BankError::Host(e) => write!(f, "host: {e}"),
        }
    }
}

fn account_key(name: &str) -> Result<Vec<u8>, BankError> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(valid) {
        return Err(BankError::BadName);
    }
    Ok([ACCOUNT_PREFIX, name.as_bytes()].concat())
}

fn amount(text: &str) -> Result<i64, BankError> {
    text.parse::<i64>()
        .ok()
        .filter(|&n| n >= 0)
        .ok_or(BankError::BadAmount)
}

fn decode(value: &[u8]) -> Result<i64, BankError> {
    value
        .try_into()
        .map(i64::from_le_bytes)
        .map_err(|_| BankError::Corrupt)
}

fn balance(name: &str) -> Result<i64, BankError> {
    let mut buf = [0u8; 8];
    match Namespace::OWN.get_into(&account_key(name)?, &mut buf)? {
        rime_sdk::Fetched::Absent => Err(BankError::NoAccount(name.to_string())),
        rime_sdk::Fetched::Copied(n) => decode(&buf[..n]),
        rime_sdk::Fetched::BufferTooSmall { .. } => Err(BankError::Corrupt),
    }
}

fn set_balance(name: &str, value: i64) -> Result<(), BankError> {
    Ok(Namespace::OWN.put(&account_key(name)?, &value.to_le_bytes())?)
}

fn open(name: &str, initial: i64) -> Result<String, BankError> {
    let created = Namespace::OWN.cas(&account_key(name)?, None, Some(&initial.to_le_bytes()))?;
    if created {
        Ok("ok".to_string())
    } else {
        Err(BankError::Exists(name.to_string()))
    }
}

fn transfer(from: &str, to: &str, amount: i64) -> Result<String, BankError> {
    if amount == 0 {
        return Err(BankError::BadAmount);
    }
    if from == to {
        return Err(BankError::SameAccount);
    }
    let (from_balance, to_balance) = (balance(from)?, balance(to)?);
    if from_balance < amount {
        return Err(BankError::Overdraft {
            account: from.to_string(),
            balance: from_balance,
            amount,
        });
    }
    let from_after = from_balance - amount; // cannot underflow: checked above
    let to_after = to_balance.checked_add(amount).ok_or(BankError::Overflow)?;
    set_balance(from, from_after)?;
    set_balance(to, to_after)?;
    Ok([from_after.to_string(), to_after.to_string()].join(" "))
}

fn total() -> Result<String, BankError> {
    let mut sum: i128 = 0; // i128: no overflow for any number of i64 balances
    let mut accounts = Namespace::OWN.scan_prefix(ACCOUNT_PREFIX);
    while let Some(entry) = accounts.next_entry() {
        let (_key, value) = entry?;
        sum += i128::from(decode(value)?);
    }
    Ok(sum.to_string())
}

#[faaslet]
fn bank(input: &[u8]) -> Result<Vec<u8>, BankError> {
    let text = core::str::from_utf8(input).map_err(|_| BankError::Usage)?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let reply = match words.as_slice() {
        ["open", name, initial] => open(name, amount(initial)?)?,
        ["transfer", from, to, n] => transfer(from, to, amount(n)?)?,
        ["balance", name] => balance(name)?.to_string(),
        ["total"] => total()?,
        _ => return Err(BankError::Usage),
    };
    Ok(reply.into_bytes())
}

// The mock host serves the SDK's calls on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use rime_sdk::{abi::RESULT_ERROR, mock};

    fn run(input: &str) -> String {
        mock::invoke(input.as_bytes(), super::rime_invoke).text()
    }

    #[test]
    fn transfers_conserve_money_and_refuse_overdrafts() {
        mock::reset();
        assert_eq!(run("open alice 100"), "ok");
        assert_eq!(run("open bob 5"), "ok");
        assert_eq!(run("open bob 7"), "account bob already exists");
        assert_eq!(run("transfer alice bob 30"), "70 35");
        assert_eq!(
            run("transfer bob alice 36"),
            "overdraft: bob has 35, cannot send 36"
        );
        assert_eq!(run("transfer bob carol 1"), "no account carol");
        assert_eq!(run("balance bob"), "35");
        assert_eq!(run("total"), "105");
        let refused = mock::invoke(b"transfer alice bob 71", super::rime_invoke);
        assert_eq!(refused.code, RESULT_ERROR);
        assert_eq!(
            run("balance alice"),
            "70",
            "a refused transfer commits nothing"
        );
        assert!(run("withdraw all").starts_with("usage"));
        assert!(run("open bad/name 1").starts_with("account names"));
        assert!(run("open dave -1").starts_with("amount must be"));
    }
}
