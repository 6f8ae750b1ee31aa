//! The join desk's bounds: what spends a try, what is limited per source, and what no source can
//! do to the others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::env::SeededEntropy;

const FINGERPRINT: Fingerprint = Fingerprint([4; 32]);

fn desk_with_code() -> (JoinDesk, String) {
    let desk = JoinDesk::default();
    desk.set_fingerprint(FINGERPRINT);
    let code = desk.new_code(0, 12345678, false);
    (desk, code)
}

fn host(last: u8) -> Source {
    Source::of(IpAddr::V4(Ipv4Addr::new(192, 168, 1, last)))
}

fn joiner(code: &str) -> pairing::Joiner {
    pairing::Joiner::start(code, &FINGERPRINT, [9; 32]).unwrap()
}

/// A whole exchange from `source` with `code`; the joiner's refusal or what it was let in as.
fn join(desk: &JoinDesk, source: Source, code: &str, now_ms: u64) -> Result<Joined, JoinRefusal> {
    let entropy = SeededEntropy::from_seed(now_ms);
    let joiner = joiner(code);
    let started = desk.start(source, "laptop", joiner.message(), now_ms, &entropy)?;
    let keys = joiner.confirm(&started.session, &started.message).unwrap();
    desk.finish(&started.session, keys.confirmation(), now_ms + 1)
}

#[test]
fn a_joiner_with_the_code_is_let_in_once_and_can_check_the_coordinator() {
    let (desk, code) = desk_with_code();
    let entropy = SeededEntropy::from_seed(1);
    let joiner = joiner(&code);
    let started = desk
        .start(host(1), "laptop", joiner.message(), 1_000, &entropy)
        .unwrap();
    let keys = joiner.confirm(&started.session, &started.message).unwrap();
    let joined = desk
        .finish(&started.session, keys.confirmation(), 2_000)
        .unwrap();
    assert_eq!(joined.device_name, "laptop");
    let sealed = joined.sealer.seal(b"grant", [1; 12]);
    assert_eq!(
        keys.open(joined.sealer.confirmation(), &sealed).unwrap(),
        b"grant"
    );
    assert_eq!(desk.tries_left(2_000), None, "the code is used up");
    assert_eq!(
        join(&desk, host(2), &code, 3_000).err(),
        Some(JoinRefusal::NoCode)
    );
}

#[test]
fn starts_malformed_messages_and_abandoned_exchanges_spend_no_try() {
    let (desk, code) = desk_with_code();
    let entropy = SeededEntropy::from_seed(2);
    let mut now_ms = 1_000;
    for round in 0..50 {
        let guess = joiner("0000-0000");
        // Abandoned after the coordinator's answer, as a guesser that learned nothing would.
        let _ = desk.start(host(66), "guesser", guess.message(), now_ms, &entropy);
        let malformed = desk
            .start(host(67), "guesser", &[round; 33], now_ms, &entropy)
            .map(|_| ());
        assert!(
            matches!(malformed, Err(JoinRefusal::Malformed(_))),
            "{malformed:?}"
        );
        now_ms += START_SPACING_MS;
    }
    assert_eq!(desk.tries_left(now_ms), Some(CODE_TRIES));
    assert!(join(&desk, host(1), &code, now_ms).is_ok());
}

#[test]
fn wrong_confirmations_are_limited_per_source_and_burn_the_code_in_all() {
    let (desk, code) = desk_with_code();
    let mut now_ms = 1_000;
    let wrong = |source: Source, now_ms: u64| join(&desk, source, "0000-0000", now_ms);
    for _ in 0..WRONG_TRIES_PER_SOURCE_MAX {
        assert!(matches!(
            wrong(host(66), now_ms),
            Err(JoinRefusal::Failed(_))
        ));
        now_ms += START_SPACING_MS;
    }
    let refused = wrong(host(66), now_ms).err().unwrap();
    assert!(
        matches!(&refused, JoinRefusal::Failed(message) if message.contains("too many wrong tries")),
        "{refused:?}"
    );
    assert_eq!(
        desk.tries_left(now_ms),
        Some(CODE_TRIES - WRONG_TRIES_PER_SOURCE_MAX),
        "one host cannot kill the code"
    );
    // Several hosts together still get no more than the code's tries.
    let mut source = 100;
    while desk.tries_left(now_ms).is_some() {
        let _ = wrong(host(source), now_ms);
        source += 1;
        now_ms += 1;
    }
    assert_eq!(
        u32::from(source - 100),
        CODE_TRIES - WRONG_TRIES_PER_SOURCE_MAX
    );
    assert_eq!(
        join(&desk, host(1), &code, now_ms).err(),
        Some(JoinRefusal::NoCode),
        "after its tries the code is dead, even for the right guess"
    );
}

#[test]
fn starts_are_spaced_per_source_and_one_source_cannot_hold_every_exchange() {
    let (desk, code) = desk_with_code();
    let entropy = SeededEntropy::from_seed(3);
    let message = joiner("0000-0000").message().to_vec();
    let start = |source: Source, now_ms: u64| {
        desk.start(source, "x", &message, now_ms, &entropy)
            .map(|_| ())
    };
    assert!(start(host(66), 1_000).is_ok());
    assert!(matches!(start(host(66), 1_001), Err(JoinRefusal::Busy(_))));
    assert!(
        start(host(67), 1_001).is_ok(),
        "spacing is per source, not across the pool"
    );
    assert!(start(host(66), 1_000 + START_SPACING_MS).is_ok());
    assert!(
        matches!(
            start(host(66), 1_000 + 2 * START_SPACING_MS),
            Err(JoinRefusal::Busy(_))
        ),
        "a source holds at most {EXCHANGES_PER_SOURCE_MAX} exchanges"
    );
    // Sources holding two each fill every slot; a newcomer still gets in.
    let mut now_ms = 2_000;
    for source in 67..67 + (EXCHANGES_MAX / EXCHANGES_PER_SOURCE_MAX) as u8 {
        let _ = start(host(source), now_ms);
        let _ = start(host(source), now_ms + START_SPACING_MS);
    }
    now_ms += 2 * START_SPACING_MS;
    assert!(join(&desk, host(1), &code, now_ms).is_ok());
}

#[test]
fn codes_expire_and_plain_http_cannot_pair() {
    let (desk, code) = desk_with_code();
    assert_eq!(
        join(&desk, host(1), &code, CODE_TTL_MS).err(),
        Some(JoinRefusal::NoCode)
    );
    let plain = JoinDesk::default();
    plain.new_code(0, 1, false);
    assert_eq!(
        join(&plain, host(1), &code, 1).err(),
        Some(JoinRefusal::NoTls)
    );
}

#[test]
fn an_ipv6_host_is_one_source_across_its_network() {
    let address = |last: u16| IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 2, 3, 4, 5, 6, last));
    assert_eq!(Source::of(address(1)), Source::of(address(2)));
    let other = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 2, 4, 4, 5, 6, 1));
    assert_ne!(Source::of(address(1)), Source::of(other));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 168, 1, 1).to_ipv6_mapped());
    assert_eq!(Source::of(mapped), host(1));
}
