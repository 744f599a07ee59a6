use super::*;
use proptest::prelude::*;

fn encode(rec: &Record<'_>, lsn: u64, durable: u64) -> Vec<u8> {
    let mut out = Vec::new();
    rec.encode_into(Lsn(lsn), Lsn(durable), &mut out).unwrap();
    out
}

fn sample_writes() -> Vec<(TreeId, Vec<u8>, Option<Vec<u8>>)> {
    vec![
        (TreeId(1), b"alpha".to_vec(), Some(b"one".to_vec())),
        (TreeId(7), b"beta".to_vec(), None),
        (TreeId(0), Vec::new(), Some(Vec::new())),
    ]
}

fn with_commit<R>(f: impl FnOnce(Record<'_>) -> R) -> R {
    let owned = sample_writes();
    let writes: Vec<Write<'_>> = owned
        .iter()
        .map(|(t, k, v)| Write {
            tree: *t,
            key: k,
            value: v.as_deref(),
        })
        .collect();
    f(Record::Commit(&writes))
}

#[test]
fn every_kind_round_trips_with_its_position_and_floor() {
    let smo = [9u8; 100];
    with_commit(|commit| {
        let recs = [
            commit,
            Record::Smo(&smo),
            Record::Smo(&[]),
            Record::CheckpointBegin {
                redo_lsn: Lsn(4096),
            },
            Record::CheckpointEnd {
                redo_lsn: Lsn(u64::MAX),
            },
        ];
        for rec in recs {
            let bytes = encode(&rec, 10_000, 9_000);
            assert_eq!(bytes.len(), rec.encoded_len());
            let (got, len) = decode(&bytes).unwrap();
            assert_eq!(len, bytes.len());
            assert_eq!(got.lsn, Lsn(10_000));
            assert_eq!(got.durable_floor, Lsn(9_000));
            assert_eq!(got.record, rec.to_owned_record());
            assert_eq!(got.end_lsn(), Lsn(10_000 + len as u64));
        }
    });
}

#[test]
fn durable_floor_saturates_conservatively_when_far_behind() {
    let bytes = encode(&Record::Smo(b"x"), 1 << 40, 0);
    let (got, _) = decode(&bytes).unwrap();
    // Stored distance saturates at u32::MAX: the floor can only be lower
    // than the truth, never higher.
    assert_eq!(got.durable_floor, Lsn((1 << 40) - u64::from(u32::MAX)));
}

#[test]
fn bytes_after_the_record_are_ignored() {
    let mut bytes = encode(&Record::Smo(b"abc"), 0, 0);
    let len = bytes.len();
    bytes.extend_from_slice(&[0xff; 50]);
    assert_eq!(decode(&bytes).unwrap().1, len);
}

#[test]
fn short_buffer_is_short_error_at_every_cut() {
    let bytes = with_commit(|c| encode(&c, 64, 0));
    for cut in 0..bytes.len() {
        match decode(&bytes[..cut]) {
            Err(RecordError::Short { need, have }) => {
                assert_eq!(have, cut);
                assert!(need > cut);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn oversized_length_field_is_rejected_before_allocating() {
    let mut bytes = encode(&Record::Smo(b"abc"), 0, 0);
    bytes[OFF_LEN..OFF_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode(&bytes),
        Err(RecordError::TooLong {
            len: u32::MAX as usize,
            max: MAX_PAYLOAD_LEN
        })
    );
}

#[test]
fn appending_an_oversized_record_is_an_error_and_leaves_the_buffer_alone() {
    let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
    let mut out = vec![1, 2, 3];
    let err = Record::Smo(&big).encode_into(Lsn(0), Lsn(0), &mut out);
    assert!(matches!(err, Err(RecordError::TooLong { .. })));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn single_bit_flip_anywhere_is_detected() {
    let bytes = with_commit(|c| encode(&c, 123, 100));
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        match decode(&b) {
            // A flipped length bit may make the record longer than the buffer,
            // or longer than allowed; a flipped reserved bit is caught as such.
            Err(
                RecordError::BadChecksum { .. }
                | RecordError::Short { .. }
                | RecordError::ReservedNotZero,
            ) => {}
            Err(RecordError::TooLong { .. }) => {}
            // A flip in the lsn or back field passes the length checks and
            // must then fail the checksum, never decode.
            other => panic!("bit {bit}: {other:?}"),
        }
    }
}

#[test]
fn unknown_kind_with_valid_checksum_is_unknown_kind() {
    let mut bytes = encode(&Record::Smo(b"abc"), 0, 0);
    bytes[OFF_KIND] = 200;
    let crc = checksum(&bytes);
    bytes[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&bytes), Err(RecordError::UnknownKind(200)));
}

#[test]
fn zero_kind_is_never_a_record() {
    let mut bytes = encode(&Record::Smo(b""), 0, 0);
    bytes[OFF_KIND] = 0;
    let crc = checksum(&bytes);
    bytes[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&bytes), Err(RecordError::UnknownKind(0)));
    assert!(is_blank_header(&[0; HEADER_SIZE]));
    assert!(!is_blank_header(&bytes));
}

/// Re-seals `payload` as a record of `kind` with a correct checksum, so the
/// payload decoder itself is what gets tested.
fn sealed(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut bytes = encode(&Record::Smo(payload), 0, 0);
    bytes[OFF_KIND] = kind as u8;
    let crc = checksum(&bytes);
    bytes[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn malformed_commit_payloads_are_bad_payload() {
    let cases: &[(&str, Vec<u8>)] = &[
        ("empty", vec![]),
        ("count larger than payload", 1000u32.to_le_bytes().to_vec()),
        (
            "truncated write header",
            [1u32.to_le_bytes(), 0u32.to_le_bytes(), 0u32.to_le_bytes()].concat(),
        ),
        (
            "key past end",
            [
                1u32.to_le_bytes(),
                0u32.to_le_bytes(),
                50u32.to_le_bytes(),
                TOMBSTONE.to_le_bytes(),
            ]
            .concat(),
        ),
        (
            "value past end",
            [
                1u32.to_le_bytes(),
                0u32.to_le_bytes(),
                0u32.to_le_bytes(),
                9u32.to_le_bytes(),
            ]
            .concat(),
        ),
        (
            "trailing bytes",
            [0u32.to_le_bytes().to_vec(), vec![1]].concat(),
        ),
    ];
    for (name, payload) in cases {
        match decode(&sealed(Kind::Commit, payload)) {
            Err(RecordError::BadPayload { kind: "Commit", .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn checkpoint_payload_of_wrong_size_is_bad_payload() {
    for len in [0usize, 7, 9] {
        let bytes = sealed(Kind::CheckpointEnd, &vec![0; len]);
        assert!(
            matches!(
                decode(&bytes),
                Err(RecordError::BadPayload {
                    kind: "CheckpointEnd",
                    ..
                })
            ),
            "{len}"
        );
    }
}

fn arb_owned() -> impl Strategy<Value = OwnedRecord> {
    let write = (
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    )
        .prop_map(|(t, key, value)| OwnedWrite {
            tree: TreeId(t),
            key,
            value,
        });
    prop_oneof![
        prop::collection::vec(write, 0..8).prop_map(OwnedRecord::Commit),
        prop::collection::vec(any::<u8>(), 0..500).prop_map(OwnedRecord::Smo),
        any::<u64>().prop_map(|l| OwnedRecord::CheckpointBegin { redo_lsn: Lsn(l) }),
        any::<u64>().prop_map(|l| OwnedRecord::CheckpointEnd { redo_lsn: Lsn(l) }),
    ]
}

fn encode_owned(rec: &OwnedRecord, lsn: u64, durable: u64) -> Vec<u8> {
    match rec {
        OwnedRecord::Commit(ws) => {
            let writes: Vec<Write<'_>> = ws
                .iter()
                .map(|w| Write {
                    tree: w.tree,
                    key: &w.key,
                    value: w.value.as_deref(),
                })
                .collect();
            encode(&Record::Commit(&writes), lsn, durable)
        }
        OwnedRecord::Smo(p) => encode(&Record::Smo(p), lsn, durable),
        OwnedRecord::CheckpointBegin { redo_lsn } => encode(
            &Record::CheckpointBegin {
                redo_lsn: *redo_lsn,
            },
            lsn,
            durable,
        ),
        OwnedRecord::CheckpointEnd { redo_lsn } => encode(
            &Record::CheckpointEnd {
                redo_lsn: *redo_lsn,
            },
            lsn,
            durable,
        ),
    }
}

proptest! {
    #[test]
    fn random_records_round_trip(rec in arb_owned(), lsn in any::<u64>(), back in any::<u32>()) {
        let durable = lsn.saturating_sub(u64::from(back));
        let bytes = encode_owned(&rec, lsn, durable);
        prop_assert_eq!(bytes.len(), rec.encoded_len());
        let (got, len) = decode(&bytes).unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(got.lsn, Lsn(lsn));
        prop_assert_eq!(got.durable_floor, Lsn(durable));
        prop_assert_eq!(got.record, rec);
    }

    #[test]
    fn random_corruption_never_panics_and_never_decodes_to_something_else(
        rec in arb_owned(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = encode_owned(&rec, 4096, 0);
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        // crc32c detects all errors of up to 3 bits in these lengths, and a
        // random multi-byte change with probability 1 - 2^-32; either way the
        // decoder must return, not panic.
        if let Ok((got, _)) = decode(&bytes) {
            prop_assert_eq!(got.record, rec);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
    }
}
