//! The exchange end to end in memory: the honest case, a wrong code, a relay with another
//! certificate, an abandoned exchange, and tampering.

use super::*;

const SESSION: &str = "s-1";

fn fingerprint(byte: u8) -> Fingerprint {
    Fingerprint([byte; 32])
}

/// Runs the whole exchange; the joiner sees `seen`, the coordinator holds `own`.
fn exchange(
    joiner_code: &str,
    coordinator_code: &str,
    seen: Fingerprint,
    own: Fingerprint,
) -> Result<Vec<u8>, PairingError> {
    let joiner = Joiner::start(joiner_code, &seen, [1; 32])?;
    let responded = respond(coordinator_code, &own, SESSION, joiner.message(), [2; 32])?;
    let keys = joiner.confirm(SESSION, &responded.message)?;
    let sealer = responded.pending.check(keys.confirmation())?;
    keys.open(sealer.confirmation(), &sealer.seal(b"ccj_secret", [3; 12]))
}

#[test]
fn the_right_code_on_the_right_certificate_hands_over_the_grant() {
    assert_eq!(
        exchange("1234-5678", "12345678", fingerprint(7), fingerprint(7)),
        Ok(b"ccj_secret".to_vec())
    );
}

#[test]
fn a_wrong_code_fails_at_the_joiners_confirmation_where_the_coordinator_counts_it() {
    assert_eq!(
        exchange("1234-5679", "1234-5678", fingerprint(7), fingerprint(7)),
        Err(PairingError::JoinerNotConfirmed)
    );
}

#[test]
fn a_relay_with_its_own_certificate_fails_even_with_the_right_code() {
    // The joiner's TLS ends at the relay (fingerprint 9); the relay forwards the messages to
    // the real coordinator (fingerprint 7), which binds its own certificate.
    assert_eq!(
        exchange("1234-5678", "1234-5678", fingerprint(9), fingerprint(7)),
        Err(PairingError::JoinerNotConfirmed)
    );
}

#[test]
fn the_joiner_opens_nothing_from_a_coordinator_that_does_not_confirm() {
    let joiner = Joiner::start("1234-5678", &fingerprint(7), [1; 32]).unwrap();
    let responded = respond(
        "1234-5678",
        &fingerprint(7),
        SESSION,
        joiner.message(),
        [2; 32],
    )
    .unwrap();
    let keys = joiner.confirm(SESSION, &responded.message).unwrap();
    let sealer = responded.pending.check(keys.confirmation()).unwrap();
    let sealed = sealer.seal(b"ccj_secret", [3; 12]);
    assert_eq!(
        keys.open(&[0u8; 32], &sealed),
        Err(PairingError::CoordinatorNotConfirmed)
    );
}

#[test]
fn a_forged_joiner_confirmation_or_a_tampered_seal_is_refused() {
    let joiner = Joiner::start("11112222", &fingerprint(1), [4; 32]).unwrap();
    let joiner_message = &joiner.message().to_vec();
    let responded = respond(
        "11112222",
        &fingerprint(1),
        SESSION,
        joiner.message(),
        [5; 32],
    )
    .unwrap();
    let keys = joiner.confirm(SESSION, &responded.message).unwrap();
    assert_eq!(
        respond(
            "11112222",
            &fingerprint(1),
            SESSION,
            joiner_message,
            [5; 32]
        )
        .and_then(|forged| forged.pending.check(&[0u8; 32]))
        .err(),
        Some(PairingError::JoinerNotConfirmed)
    );
    let sealer = responded.pending.check(keys.confirmation()).unwrap();
    let mut sealed = sealer.seal(b"grant", [6; 12]);
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let confirmation = sealer.confirmation();
    assert_eq!(
        keys.open(confirmation, &sealed),
        Err(PairingError::Unsealing)
    );
    assert_eq!(
        keys.open(confirmation, &[1, 2, 3]),
        Err(PairingError::Unsealing)
    );
}

#[test]
fn codes_are_eight_digits_and_typing_slips_are_forgiven() {
    assert_eq!(code_from_random(42), "0000-0042");
    assert_eq!(code_from_random(u64::MAX).len(), 9);
    assert_eq!(normalize_code(" 4821 - 0937 "), Ok("48210937".to_owned()));
    for bad in ["1234567", "123456789", "1234-567a", ""] {
        assert_eq!(
            normalize_code(bad),
            Err(PairingError::MalformedCode),
            "{bad}"
        );
    }
    assert_eq!(
        respond("1234-5678", &fingerprint(1), SESSION, b"short", [0; 32]).err(),
        Some(PairingError::MalformedMessage)
    );
}
