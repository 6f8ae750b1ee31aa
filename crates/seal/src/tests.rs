//! Unit tests of the crate: round trips, and every kind of change a sealed blob or a wrapped
//! key may suffer failing as it should.

use std::collections::BTreeMap;

use wire::BlobHash;

use super::*;

/// Deterministic, non-repeating plaintext, so a swapped or shifted chunk cannot open to the
/// same bytes by accident.
fn plaintext(len_bytes: usize) -> Vec<u8> {
    (0..len_bytes)
        .map(|index| (index as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

const SIZES: [usize; 6] = [
    0,
    1,
    CHUNK_BYTES - 1,
    CHUNK_BYTES,
    CHUNK_BYTES + 1,
    3 * CHUNK_BYTES + 17,
];

/// Where chunk `index` (0-based) begins in a sealed blob.
fn chunk_offset(index: usize) -> usize {
    HEADER_BYTES + index * (CHUNK_BYTES + TAG_BYTES)
}

fn assert_tampered(result: Result<Vec<u8>, SealError>, what: &str) {
    match result {
        Err(SealError::Tampered) => {}
        other => panic!("{what}: expected Tampered, got {other:?}"),
    }
}

#[test]
fn blobs_round_trip_at_every_size_and_have_the_predicted_length() {
    let key = DataKey::generate();
    for size in SIZES {
        let plain = plaintext(size);
        let sealed = seal_bytes(&key, &plain);
        assert_eq!(sealed.len() as u64, sealed_len(size as u64), "size {size}");
        assert_eq!(open_bytes(&key, &sealed).unwrap(), plain, "size {size}");
    }
}

#[test]
fn streaming_seal_and_open_report_the_bytes_they_wrote() {
    let key = DataKey::generate();
    let plain = plaintext(3 * CHUNK_BYTES + 17);
    let mut sealed = Vec::new();
    let sealed_bytes = seal(&key, plain.as_slice(), &mut sealed).unwrap();
    assert_eq!(sealed_bytes, sealed.len() as u64);
    let mut opened = Vec::new();
    let plain_bytes = open(&key, sealed.as_slice(), &mut opened).unwrap();
    assert_eq!(plain_bytes, plain.len() as u64);
    assert_eq!(opened, plain);
}

#[test]
fn sealed_len_counts_one_tag_per_chunk() {
    assert_eq!(sealed_len(0), 40 + 16);
    assert_eq!(sealed_len(CHUNK_BYTES as u64), 40 + CHUNK_BYTES as u64 + 16);
    assert_eq!(
        sealed_len(CHUNK_BYTES as u64 + 1),
        40 + CHUNK_BYTES as u64 + 1 + 32
    );
}

/// Reads one byte at a time, as a slow socket may.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let Some((&first, rest)) = self.0.split_first() else {
            return Ok(0);
        };
        if buffer.is_empty() {
            return Ok(0);
        }
        buffer[0] = first;
        self.0 = rest;
        Ok(1)
    }
}

#[test]
fn short_reads_do_not_change_the_chunking() {
    let key = DataKey::generate();
    let plain = plaintext(CHUNK_BYTES + 5);
    let mut sealed = Vec::new();
    seal(&key, Trickle(&plain), &mut sealed).unwrap();
    assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64));
    let mut opened = Vec::new();
    open(&key, Trickle(&sealed), &mut opened).unwrap();
    assert_eq!(opened, plain);
}

#[test]
fn two_seals_of_one_plaintext_differ() {
    let key = DataKey::generate();
    let plain = plaintext(100);
    let first = seal_bytes(&key, &plain);
    let second = seal_bytes(&key, &plain);
    assert_ne!(
        first[MAGIC.len()..HEADER_BYTES],
        second[MAGIC.len()..HEADER_BYTES]
    );
    assert_ne!(first[HEADER_BYTES..], second[HEADER_BYTES..]);
}

#[test]
fn a_changed_magic_is_not_sealed_data() {
    let key = DataKey::generate();
    let mut sealed = seal_bytes(&key, &plaintext(10));
    sealed[0] ^= 1;
    let error = open_bytes(&key, &sealed).unwrap_err();
    assert!(matches!(error, SealError::Format(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("not sealed data (bad header)"),
        "{error}"
    );
    assert!(matches!(
        open_bytes(&key, b"ccse"),
        Err(SealError::Format(_))
    ));
    assert!(matches!(open_bytes(&key, b""), Err(SealError::Format(_))));
}

#[test]
fn a_changed_byte_in_any_region_is_tampering() {
    let key = DataKey::generate();
    let sealed = seal_bytes(&key, &plaintext(3 * CHUNK_BYTES + 17));
    let regions = [
        ("salt", MAGIC.len() + 5),
        ("first chunk", chunk_offset(0) + 100),
        ("first chunk's tag", chunk_offset(1) - 1),
        ("a middle chunk's tag", chunk_offset(2) - TAG_BYTES),
        ("last chunk", chunk_offset(3) + 3),
        ("last chunk's tag", sealed.len() - 1),
    ];
    for (region, offset) in regions {
        let mut changed = sealed.clone();
        changed[offset] ^= 0x40;
        assert_tampered(open_bytes(&key, &changed), region);
    }
}

#[test]
fn a_cut_blob_is_tampering() {
    let key = DataKey::generate();
    let sealed = seal_bytes(&key, &plaintext(3 * CHUNK_BYTES + 17));
    let cuts = [
        ("the last chunk dropped", chunk_offset(3)),
        ("two chunks dropped", chunk_offset(2)),
        ("the last byte dropped", sealed.len() - 1),
        ("cut mid-chunk", chunk_offset(1) + 1000),
        ("cut mid-tag", chunk_offset(1) - 3),
        ("only the header", HEADER_BYTES),
        ("cut in the salt", HEADER_BYTES - 1),
    ];
    for (cut, len_bytes) in cuts {
        assert_tampered(open_bytes(&key, &sealed[..len_bytes]), cut);
    }
    // A blob of exactly full chunks loses its last one at a chunk boundary.
    let whole_chunks = seal_bytes(&key, &plaintext(2 * CHUNK_BYTES));
    assert_tampered(
        open_bytes(&key, &whole_chunks[..chunk_offset(1)]),
        "a full last chunk dropped",
    );
}

#[test]
fn bytes_appended_after_the_last_chunk_are_tampering() {
    let key = DataKey::generate();
    for size in [0, 10, CHUNK_BYTES, CHUNK_BYTES + 1] {
        let mut sealed = seal_bytes(&key, &plaintext(size));
        sealed.push(0);
        assert_tampered(open_bytes(&key, &sealed), &format!("one byte after {size}"));
        sealed.extend_from_slice(&[0; TAG_BYTES + 100]);
        assert_tampered(open_bytes(&key, &sealed), &format!("bytes after {size}"));
    }
}

#[test]
fn an_empty_chunk_appended_by_the_key_holder_is_refused() {
    // Not something the key's outsiders can forge, but the form seal never writes: the
    // last chunk is empty only when the whole plaintext is.
    let key = DataKey::generate();
    let sealed = seal_bytes(&key, &plaintext(CHUNK_BYTES));
    let mut extended = sealed[..chunk_offset(1)].to_vec();
    extended.extend_from_slice(&[0; TAG_BYTES]);
    assert_tampered(open_bytes(&key, &extended), "an empty last chunk");
}

#[test]
fn swapped_chunks_are_tampering() {
    let key = DataKey::generate();
    let mut sealed = seal_bytes(&key, &plaintext(3 * CHUNK_BYTES + 17));
    let first = sealed[chunk_offset(0)..chunk_offset(1)].to_vec();
    let second = sealed[chunk_offset(1)..chunk_offset(2)].to_vec();
    sealed[chunk_offset(0)..chunk_offset(1)].copy_from_slice(&second);
    sealed[chunk_offset(1)..chunk_offset(2)].copy_from_slice(&first);
    assert_tampered(open_bytes(&key, &sealed), "the first two chunks swapped");
}

#[test]
fn another_key_cannot_open() {
    let sealed = seal_bytes(&DataKey::generate(), &plaintext(100));
    assert_tampered(open_bytes(&DataKey::generate(), &sealed), "another key");
    let error = open_bytes(&DataKey::generate(), &sealed).unwrap_err();
    assert!(error.to_string().contains("fetch it again"), "{error}");
}

#[test]
fn a_failing_reader_is_an_io_error_that_says_what_was_read() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk gone"))
        }
    }
    let key = DataKey::generate();
    let error = seal(&key, Broken, Vec::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "reading the plaintext to seal: disk gone"
    );
    let error = open(&key, Broken, Vec::new()).unwrap_err();
    assert_eq!(error.to_string(), "reading sealed data: disk gone");
}

#[test]
fn keys_wrap_and_unwrap_for_their_holder() {
    let secret = EncryptionSecret::generate();
    let key = DataKey::generate();
    let wrapped = wrap(&key, &secret.public(), WrapContext::JobKey).unwrap();
    assert_eq!(wrapped.as_bytes().len(), WRAPPED_KEY_BYTES);
    let unwrapped = unwrap(&wrapped, &secret, WrapContext::JobKey).unwrap();
    assert_eq!(unwrapped.as_bytes(), key.as_bytes());
    let output = WrapContext::OutputKey { attempt: 7 };
    let wrapped = wrap(&key, &secret.public(), output).unwrap();
    assert_eq!(
        unwrap(&wrapped, &secret, output).unwrap().as_bytes(),
        key.as_bytes()
    );
    // A fresh ephemeral key each time.
    assert_ne!(wrap(&key, &secret.public(), output).unwrap(), wrapped);
}

#[test]
fn a_secret_survives_saving_and_loading() {
    let secret = EncryptionSecret::generate();
    let loaded = EncryptionSecret::from_bytes(secret.to_bytes());
    assert_eq!(loaded.public(), secret.public());
    let wrapped = wrap(
        &DataKey::from_bytes([9; 32]),
        &secret.public(),
        WrapContext::JobKey,
    )
    .unwrap();
    assert_eq!(
        unwrap(&wrapped, &loaded, WrapContext::JobKey)
            .unwrap()
            .as_bytes(),
        &[9; 32]
    );
    assert_ne!(EncryptionSecret::generate().public(), secret.public());
}

#[test]
fn another_secret_cannot_unwrap() {
    let wrapped = wrap(
        &DataKey::generate(),
        &EncryptionSecret::generate().public(),
        WrapContext::JobKey,
    )
    .unwrap();
    let error = unwrap(&wrapped, &EncryptionSecret::generate(), WrapContext::JobKey).unwrap_err();
    assert!(matches!(error, SealError::NotForThisHolder), "{error:?}");
    assert!(
        error.to_string().contains("crowdcloud keys grant"),
        "{error}"
    );
}

#[test]
fn a_wrap_opens_only_for_its_context() {
    let secret = EncryptionSecret::generate();
    let key = DataKey::generate();
    let contexts = [
        WrapContext::JobKey,
        WrapContext::OutputKey { attempt: 1 },
        WrapContext::OutputKey { attempt: 2 },
        WrapContext::OutputKey { attempt: 1 << 40 },
    ];
    for made_for in contexts {
        let wrapped = wrap(&key, &secret.public(), made_for).unwrap();
        for opened_as in contexts {
            let result = unwrap(&wrapped, &secret, opened_as);
            if made_for == opened_as {
                assert!(result.is_ok(), "{made_for:?}");
            } else {
                assert!(
                    matches!(result, Err(SealError::NotForThisHolder)),
                    "made for {made_for:?}, opened as {opened_as:?}"
                );
            }
        }
    }
}

#[test]
fn a_changed_wrap_does_not_open() {
    let secret = EncryptionSecret::generate();
    let wrapped = wrap(&DataKey::generate(), &secret.public(), WrapContext::JobKey).unwrap();
    for offset in [0, 31, 32, 50, WRAPPED_KEY_BYTES - 1] {
        let mut bytes = *wrapped.as_bytes();
        bytes[offset] ^= 1;
        let changed = WrappedKey::from_bytes(&bytes).unwrap();
        assert!(
            matches!(
                unwrap(&changed, &secret, WrapContext::JobKey),
                Err(SealError::NotForThisHolder)
            ),
            "byte {offset} changed"
        );
    }
}

#[test]
fn a_low_order_recipient_key_is_refused() {
    let error = wrap(
        &DataKey::generate(),
        &EncryptionKey([0; 32]),
        WrapContext::JobKey,
    )
    .unwrap_err();
    assert!(matches!(error, SealError::UnusableKey(_)), "{error:?}");
}

#[test]
fn wrapped_keys_round_trip_through_hex_and_json_and_check_their_length() {
    let secret = EncryptionSecret::generate();
    let wrapped = wrap(&DataKey::generate(), &secret.public(), WrapContext::JobKey).unwrap();
    let text = wrapped.to_string();
    assert_eq!(text.len(), 2 * WRAPPED_KEY_BYTES);
    assert_eq!(text.parse::<WrappedKey>().unwrap(), wrapped);
    let json = serde_json::to_string(&wrapped).unwrap();
    assert_eq!(serde_json::from_str::<WrappedKey>(&json).unwrap(), wrapped);
    assert!(text[2..].parse::<WrappedKey>().is_err());
    assert!(format!("{text}00").parse::<WrappedKey>().is_err());
    assert!(text.to_uppercase().parse::<WrappedKey>().is_err());
    assert!(matches!(
        WrappedKey::from_bytes(&[0; 79]),
        Err(SealError::Format(_))
    ));
}

#[test]
fn encryption_keys_round_trip_through_hex_and_json() {
    let key = EncryptionSecret::generate().public();
    let text = key.to_string();
    assert_eq!(text.len(), 64);
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(text.parse::<EncryptionKey>().unwrap(), key);
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(serde_json::from_str::<EncryptionKey>(&json).unwrap(), key);
}

#[test]
fn encryption_keys_of_the_wrong_shape_are_refused() {
    let text = EncryptionKey([0xab; 32]).to_string();
    for bad in [
        String::new(),
        text[..62].to_owned(),
        format!("{text}ab"),
        format!("{}zz", &text[..62]),
        text.to_uppercase(),
    ] {
        let error = bad.parse::<EncryptionKey>().unwrap_err();
        assert!(matches!(error, SealError::Malformed { .. }), "{bad:?}");
    }
    assert!(serde_json::from_str::<EncryptionKey>("\"abc\"").is_err());
}

#[test]
fn secrets_are_not_printed() {
    let secret = EncryptionSecret::from_bytes([0x5a; 32]);
    let printed = format!("{secret:?}");
    assert!(!printed.contains("5a5a5a"), "{printed}");
    let key = DataKey::from_bytes([0x5a; 32]);
    let printed = format!("{key:?}");
    assert!(
        !printed.contains("5a5a5a") && !printed.contains("90, 90"),
        "{printed}"
    );
}

#[test]
fn digests_agree_for_one_key_and_plaintext_and_differ_across_keys() {
    let key = DataKey::generate();
    let digest = |key: &DataKey, parts: &[&[u8]]| {
        let mut digester = ResultDigester::new(key);
        for part in parts {
            digester.update(part);
        }
        digester.finalize()
    };
    let whole = digest(&key, &[b"hello world"]);
    assert_eq!(digest(&key, &[b"hello", b" world"]), whole);
    assert_ne!(digest(&key, &[b"hello world!"]), whole);
    assert_ne!(digest(&DataKey::generate(), &[b"hello world"]), whole);
    assert_ne!(whole, *blake3::hash(b"hello world").as_bytes());
    let mut written = ResultDigester::new(&key);
    std::io::copy(&mut &b"hello world"[..], &mut written).unwrap();
    assert_eq!(written.finalize(), whole);
}

fn manifest() -> Manifest {
    let mut plain = BTreeMap::new();
    plain.insert(BlobHash::of(b"sealed input"), BlobHash::of(b"input"));
    plain.insert(BlobHash::of(b"sealed module"), BlobHash::of(b"module"));
    Manifest {
        requester: EncryptionSecret::generate().public(),
        plain,
    }
}

#[test]
fn manifests_round_trip_and_open_only_under_their_key() {
    let key = DataKey::generate();
    let manifest = manifest();
    let sealed = manifest.seal(&key);
    assert_eq!(Manifest::open(&sealed, &key).unwrap(), manifest);
    assert!(matches!(
        Manifest::open(&sealed, &DataKey::generate()),
        Err(SealError::Tampered)
    ));
}

#[test]
fn manifests_too_large_or_not_manifests_are_format_errors() {
    let key = DataKey::generate();
    let too_large = vec![0; sealed_len(MANIFEST_BYTES_MAX) as usize + 1];
    let error = Manifest::open(&too_large, &key).unwrap_err();
    assert!(matches!(error, SealError::Format(_)), "{error:?}");
    let not_json = seal_bytes(&key, b"not a manifest");
    assert!(matches!(
        Manifest::open(&not_json, &key),
        Err(SealError::Format(_))
    ));
}

#[test]
fn a_blob_sealed_to_a_holder_opens_only_for_that_holder_and_attempt() {
    let holder = EncryptionSecret::generate();
    let other = EncryptionSecret::generate();
    let plain = vec![7u8; CHUNK_BYTES + 3];
    let context = WrapContext::OutputKey { attempt: 9 };
    let mut sealed = Vec::new();
    let written = seal_to(&holder.public(), context, plain.as_slice(), &mut sealed).unwrap();
    assert_eq!(written, sealed.len() as u64);
    assert_eq!(sealed_to_len(plain.len() as u64), written);
    let mut opened = Vec::new();
    open_from(&holder, context, sealed.as_slice(), &mut opened).unwrap();
    assert_eq!(opened, plain);
    let wrong_attempt = WrapContext::OutputKey { attempt: 10 };
    for (secret, context) in [(&other, context), (&holder, wrong_attempt)] {
        let error = open_from(secret, context, sealed.as_slice(), Vec::new()).unwrap_err();
        assert!(matches!(error, SealError::NotForThisHolder), "{error}");
    }
    let mut changed = sealed.clone();
    *changed.last_mut().unwrap() ^= 1;
    let error = open_from(&holder, context, changed.as_slice(), Vec::new()).unwrap_err();
    assert!(matches!(error, SealError::Tampered), "{error}");
    let error = open_from(&holder, context, &sealed[..10], Vec::new()).unwrap_err();
    assert!(matches!(error, SealError::Format(_)), "{error}");
}

#[test]
fn the_coordinators_bound_on_sealed_sizes_holds_for_every_size() {
    for plain_len in [
        0,
        1,
        100,
        CHUNK_BYTES as u64 - 1,
        CHUNK_BYTES as u64,
        10 * CHUNK_BYTES as u64 + 5,
    ] {
        assert!(
            sealed_to_len(plain_len) <= wire::private::sealed_bytes_bound(plain_len),
            "{plain_len}"
        );
    }
}
