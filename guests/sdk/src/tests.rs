//! SDK behaviour against the mock host (native only).

use crate::abi::{self, Level};
use crate::{Error, Fetched, Namespace, mock};
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Bound;

const OWN: Namespace = Namespace::OWN;

/// Runs `f` inside a fresh invocation that commits if it returns Ok.
fn txn(f: impl FnOnce() -> Result<(), Error>) {
    let outcome = mock::invoke_with(b"", || crate::io::run(|_| f().map(|()| Vec::new())));
    assert_eq!(outcome.code, abi::RESULT_OK, "{}", outcome.text());
}

fn keys(scan: crate::Scan) -> Vec<Vec<u8>> {
    scan.map(|r| r.unwrap().0).collect()
}

#[test]
fn get_put_delete_and_large_values() {
    mock::reset();
    let big = vec![7u8; 1000]; // larger than the first get buffer
    txn(|| {
        assert_eq!(OWN.get(b"k")?, None);
        OWN.put(b"k", b"v")?;
        OWN.put(b"big", &big)?;
        OWN.put(b"empty", b"")?;
        assert_eq!(OWN.get(b"k")?.as_deref(), Some(&b"v"[..]));
        assert_eq!(OWN.get(b"big")?, Some(big.clone()));
        assert_eq!(OWN.get(b"empty")?, Some(Vec::new()));
        let mut small = [0u8; 4];
        assert_eq!(
            OWN.get_into(b"big", &mut small)?,
            Fetched::BufferTooSmall { needed: 1000 }
        );
        assert_eq!(small, [0; 4], "nothing copied when short");
        assert_eq!(OWN.get_into(b"nope", &mut small)?, Fetched::Absent);
        OWN.delete(b"k")?;
        OWN.delete(b"k")?; // blind: deleting an absent key is fine
        assert_eq!(OWN.get(b"k")?, None);
        Ok(())
    });
}

#[test]
fn limits_are_checked_before_calling() {
    mock::reset();
    txn(|| {
        let long_key = [0u8; abi::MAX_KEY_LEN + 1];
        assert_eq!(OWN.put(&long_key, b""), Err(Error::KeyTooLarge));
        assert_eq!(OWN.get(&long_key), Err(Error::KeyTooLarge));
        let mut scan = OWN.scan(Bound::Included(&long_key), Bound::Unbounded);
        assert_eq!(scan.next(), Some(Err(Error::KeyTooLarge)));
        assert_eq!(scan.next(), None, "fused after an error");
        assert_eq!(
            crate::output(&vec![0; abi::MAX_OUTPUT_LEN + 1]),
            Err(Error::OutputTooLarge)
        );
        Ok(())
    });
}

#[test]
fn add_semantics() {
    mock::reset();
    txn(|| {
        assert_eq!(OWN.add(b"c", 5)?, 5, "missing key counts as 0");
        assert_eq!(OWN.add(b"c", -7)?, -2);
        assert_eq!(OWN.get(b"c")?, Some((-2i64).to_le_bytes().to_vec()));
        OWN.put(b"s", b"short")?;
        assert_eq!(OWN.add(b"s", 1), Err(Error::NotI64));
        OWN.put(b"m", &i64::MAX.to_le_bytes())?;
        assert_eq!(OWN.add(b"m", 1), Err(Error::Overflow));
        assert_eq!(
            OWN.get(b"m")?,
            Some(i64::MAX.to_le_bytes().to_vec()),
            "unchanged"
        );
        Ok(())
    });
}

#[test]
fn cas_semantics() {
    mock::reset();
    txn(|| {
        assert!(
            OWN.cas(b"k", None, Some(b"1"))?,
            "expected absent, is absent"
        );
        assert!(
            !OWN.cas(b"k", None, Some(b"2"))?,
            "expected absent, is present"
        );
        assert!(!OWN.cas(b"k", Some(b"0"), Some(b"2"))?);
        assert!(OWN.cas(b"k", Some(b"1"), Some(b"2"))?);
        assert!(OWN.cas(b"k", Some(b"2"), None)?, "delete on success");
        assert_eq!(OWN.get(b"k")?, None);
        Ok(())
    });
}

#[test]
fn scan_resumes_across_small_buffers_and_grows_for_big_entries() {
    mock::reset();
    for i in 0..50u32 {
        let value = vec![b'x'; if i == 30 { 300 } else { i as usize % 5 }];
        mock::store(mock::OWN_NAME, i.to_string().as_bytes(), &value);
    }
    txn(|| {
        // 24 bytes hold one or two small entries per call; entry 30 needs 310.
        let all: Vec<_> = OWN
            .scan(Bound::Unbounded, Bound::Unbounded)
            .with_buffer_capacity(24)
            .collect();
        assert_eq!(all.len(), 50);
        assert!(
            all.windows(2)
                .all(|w| w[0].as_ref().unwrap().0 < w[1].as_ref().unwrap().0),
            "ascending"
        );
        let entry30 = all
            .iter()
            .find(|r| r.as_ref().unwrap().0 == b"30")
            .unwrap()
            .as_ref()
            .unwrap();
        assert_eq!(entry30.1.len(), 300);
        // Zero-capacity buffers work too: every call announces what it needs.
        assert_eq!(
            OWN.scan(Bound::Unbounded, Bound::Unbounded)
                .with_buffer_capacity(0)
                .count(),
            50
        );
        Ok(())
    });
}

#[test]
fn scan_bounds_and_read_your_writes() {
    mock::reset();
    txn(|| {
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            OWN.put(k, k)?;
        }
        OWN.delete(b"c")?;
        let range = |lo, hi| keys(OWN.scan(lo, hi));
        assert_eq!(
            range(Bound::Included(&b"b"[..]), Bound::Excluded(&b"d"[..])),
            [b"b"]
        );
        assert_eq!(
            range(Bound::Excluded(&b"a"[..]), Bound::Included(&b"d"[..])),
            [b"b", b"d"]
        );
        assert_eq!(
            range(Bound::Included(&b"b"[..]), Bound::Excluded(&b"b"[..])),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            range(Bound::Included(&b"d"[..]), Bound::Excluded(&b"a"[..])),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(keys(OWN.scan_prefix(b"")).len(), 3);
        let mut scan = OWN.scan_prefix(b"a");
        assert_eq!(scan.next_entry(), Some(Ok((&b"a"[..], &b"a"[..]))));
        assert_eq!(scan.next_entry(), None);
        Ok(())
    });
}

#[test]
fn errors_commit_nothing_and_become_the_output() {
    mock::reset();
    let outcome = mock::invoke_with(b"in", || {
        crate::io::run(|input| {
            assert_eq!(input, b"in");
            OWN.put(b"k", b"v").map_err(|e| e.to_string())?;
            Err::<Vec<u8>, _>("insufficient funds".to_string())
        })
    });
    assert_eq!(outcome.code, abi::RESULT_ERROR);
    assert_eq!(outcome.text(), "insufficient funds");
    assert_eq!(mock::load(mock::OWN_NAME, b"k"), None);

    let outcome = mock::invoke_with(b"", || {
        crate::io::run(|_| Ok::<_, Error>(vec![0; abi::MAX_OUTPUT_LEN + 1]))
    });
    assert_eq!(outcome.code, abi::RESULT_ERROR);
    assert!(
        outcome.text().contains("output longer than"),
        "{}",
        outcome.text()
    );
}

#[test]
fn namespaces_follow_grants() {
    mock::reset();
    mock::grant("shared", true);
    mock::grant("config", false);
    mock::store("config", b"rate", b"5");
    txn(|| {
        assert_eq!(Namespace::open(mock::OWN_NAME)?, OWN);
        let shared = Namespace::open("shared")?;
        assert_eq!(Namespace::open("shared")?, shared, "same handle twice");
        shared.put(b"k", b"v")?;
        let config = Namespace::open("config")?;
        assert_eq!(config.get(b"rate")?.as_deref(), Some(&b"5"[..]));
        assert_eq!(
            config.put(b"rate", b"6"),
            Err(Error::Denied),
            "read-only grant"
        );
        assert_eq!(Namespace::open("secret"), Err(Error::Denied));
        assert_eq!(Namespace::open("Bad Name"), Err(Error::Invalid));
        assert_eq!(Namespace::open(""), Err(Error::Invalid));
        Ok(())
    });
    assert_eq!(mock::load("shared", b"k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn log_macro_formats_without_allocating() {
    mock::reset();
    crate::log!(Level::Warn, "moved {} units", 5);
    crate::log(Level::Info, "plain");
    let logs = mock::take_logs();
    assert_eq!(logs[0], (Level::Warn, "moved 5 units".to_string()));
    assert_eq!(logs[1], (Level::Info, "plain".to_string()));
}

#[test]
fn the_log_of_one_invocation_is_bounded_as_on_the_host() {
    mock::reset();
    let logs_of = |n: usize, msg: &str| {
        mock::take_logs();
        txn(|| {
            for _ in 0..n {
                crate::log(Level::Info, msg);
            }
            Ok(())
        });
        mock::take_logs()
    };
    let logs = logs_of(abi::MAX_LOG_LINES_PER_INVOCATION + 10, "line");
    assert_eq!(logs.len(), abi::MAX_LOG_LINES_PER_INVOCATION + 1);
    let (level, last) = logs.last().unwrap();
    assert!(
        *level == Level::Warn && last.starts_with(mock::LOG_TRUNCATED),
        "{last}"
    );
    // The budget is per invocation: the next one logs again.
    assert_eq!(logs_of(1, "again"), [(Level::Info, "again".to_string())]);
    // Bytes: 16 messages of 4000 leave 1536 bytes for the 17th.
    let logs = logs_of(18, &"y".repeat(4000));
    assert_eq!(logs.len(), 18);
    assert_eq!(
        logs[16].1.len(),
        abi::MAX_LOG_BYTES_PER_INVOCATION - 16 * 4000
    );
    assert!(logs[17].1.starts_with(mock::LOG_TRUNCATED));
}

#[test]
fn cas_refuses_an_expected_value_over_the_limit() {
    mock::reset();
    let huge = vec![0u8; abi::MAX_VALUE_LEN + 1];
    txn(|| {
        assert_eq!(
            OWN.cas(b"k", Some(&huge), Some(b"v")),
            Err(Error::ValueTooLarge)
        );
        // The host's answer too, when the SDK's own check is bypassed.
        assert_eq!(
            crate::raw::cas(0, b"k", Some(&huge), None),
            abi::ERR_VALUE_TOO_LARGE
        );
        Ok(())
    });
}

#[test]
fn config_reads_entries_of_any_length() {
    mock::reset();
    mock::set_config("GREETING", b"hello");
    mock::set_config("BLOB", &[7; 5000]);
    assert_eq!(crate::config("GREETING").as_deref(), Some(&b"hello"[..]));
    assert_eq!(crate::config_str("GREETING").as_deref(), Some("hello"));
    assert_eq!(crate::config("BLOB"), Some(vec![7; 5000]));
    assert_eq!(
        crate::config_str("BLOB").as_deref(),
        Some("\u{7}".repeat(5000).as_str())
    );
    assert_eq!(crate::config("MISSING"), None);
    assert_eq!(crate::config("not a key"), None);
    mock::set_config("BINARY", &[0xff]);
    assert_eq!(crate::config_str("BINARY"), None);
}
