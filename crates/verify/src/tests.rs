//! The policy's rules, case by case.

use super::*;
use wire::{BlobHash, BlobRef, Outcome, OutputFile};

fn digest(byte: u8) -> Digest {
    Digest([byte; 32])
}

/// Claims of (owner, digest byte), every node trusted.
fn claims(of: &[(u64, u8)]) -> Vec<Claim> {
    of.iter()
        .map(|&(owner, byte)| Claim {
            owner,
            makers: Vec::new(),
            digest: digest(byte),
            trusted: true,
        })
        .collect()
}

fn untrusted(mut claims: Vec<Claim>) -> Vec<Claim> {
    for claim in &mut claims {
        claim.trusted = false;
    }
    claims
}

#[test]
fn two_owners_agreeing_verify_and_one_owner_twice_does_not() {
    let policy = Policy::PUBLIC;
    let tally = |claims: &[Claim]| tally(claims, false, &policy);
    assert_eq!(tally(&claims(&[(1, 7)])), Tally::Wanting { more: 1 });
    assert_eq!(
        tally(&claims(&[(1, 7), (1, 7)])),
        Tally::Wanting { more: 1 },
        "one owner's nodes are one witness"
    );
    assert_eq!(
        tally(&claims(&[(1, 7), (2, 7)])),
        Tally::Agreed {
            digest: digest(7),
            agreeing: vec![0, 1],
            dissenting: vec![],
        }
    );
}

#[test]
fn two_new_identities_cannot_vouch_for_each_other_and_a_third_owner_can_settle_it() {
    let policy = Policy::PUBLIC;
    let new_pair = untrusted(claims(&[(1, 7), (2, 7)]));
    assert_eq!(tally(&new_pair, false, &policy), Tally::Wanting { more: 1 });
    // A trusted subject does not vouch for itself.
    let mut subject_trusted = new_pair.clone();
    subject_trusted[0].trusted = true;
    assert_eq!(
        tally(&subject_trusted, false, &policy),
        Tally::Wanting { more: 1 }
    );
    let three = untrusted(claims(&[(1, 7), (2, 7), (3, 7)]));
    assert!(matches!(
        tally(&three, false, &policy),
        Tally::Agreed { .. }
    ));
}

#[test]
fn an_audit_needs_two_witnesses_besides_its_subject() {
    let policy = Policy::PUBLIC;
    assert_eq!(
        tally(&claims(&[(1, 7)]), true, &policy),
        Tally::Wanting { more: 2 }
    );
    assert_eq!(
        tally(&claims(&[(1, 7), (2, 7)]), true, &policy),
        Tally::Wanting { more: 1 },
        "one trusted accomplice does not pass an audit"
    );
    assert!(matches!(
        tally(&claims(&[(1, 7), (2, 7), (3, 7)]), true, &policy),
        Tally::Agreed { .. }
    ));
}

#[test]
fn a_disagreement_raises_the_quorum_so_two_colluders_cannot_outvote_an_honest_node() {
    let policy = Policy::PUBLIC;
    let tally = |claims: &[Claim]| tally(claims, false, &policy);
    // Honest 7 first, then a colluder's 9: both need a third voice.
    assert_eq!(
        tally(&claims(&[(1, 7), (2, 9)])),
        Tally::Wanting { more: 2 }
    );
    // A second colluder agrees with the first: still not enough.
    assert_eq!(
        tally(&claims(&[(1, 7), (2, 9), (3, 9)])),
        Tally::Wanting { more: 1 }
    );
    assert_eq!(
        tally(&claims(&[(1, 7), (2, 9), (3, 7), (4, 7)])),
        Tally::Agreed {
            digest: digest(7),
            agreeing: vec![0, 2, 3],
            dissenting: vec![1],
        }
    );
}

#[test]
fn a_task_split_past_the_bound_is_inconclusive() {
    let policy = Policy {
        results_max: 4,
        ..Policy::PUBLIC
    };
    let tally = |claims: &[Claim]| tally(claims, false, &policy);
    assert_eq!(
        tally(&claims(&[(1, 1), (2, 2), (3, 3)])),
        Tally::Inconclusive,
        "two more could at best make a pair, and the bound is 4"
    );
    assert_eq!(
        tally(&claims(&[(1, 1), (2, 2), (3, 1)])),
        Tally::Wanting { more: 1 }
    );
    assert_eq!(
        tally(&claims(&[(1, 1), (2, 2), (3, 1), (4, 2)])),
        Tally::Inconclusive
    );
}

#[test]
fn probation_replicates_and_a_trusted_node_is_audited_at_the_rate_or_when_it_holds_too_much() {
    let policy = Policy::PUBLIC;
    let new = Record::default();
    assert_eq!(first(&new, 0, 0, &policy), First::Replicate);
    let trusted = Record {
        verified: 100,
        ..Record::default()
    };
    assert_eq!(trusted.standing(&policy), Standing::Trusted);
    let audited = (0..1_000_000u64)
        .filter(|roll| first(&trusted, 0, *roll, &policy) == First::Audit)
        .count();
    assert_eq!(audited, 50_000, "5 % of the rolls");
    assert_eq!(first(&trusted, 0, 999_999, &policy), First::Hold);
    assert_eq!(
        first(&trusted, policy.held_max as usize, 999_999, &policy),
        First::Audit
    );
    let banned = Record {
        banned: true,
        ..trusted
    };
    assert_eq!(banned.standing(&policy), Standing::Banned);
    assert_eq!(first(&banned, 0, 999_999, &policy), First::Replicate);
}

#[test]
fn bad_knobs_are_refused_with_the_one_to_change() {
    let bad = [
        Policy {
            audit_per_million: 1_000_001,
            ..Policy::PUBLIC
        },
        Policy {
            quorum: 1,
            ..Policy::PUBLIC
        },
        Policy {
            results_max: 2,
            ..Policy::PUBLIC
        },
        Policy {
            results_max: RESULTS_MAX + 1,
            ..Policy::PUBLIC
        },
        Policy {
            held_max: 0,
            ..Policy::PUBLIC
        },
    ];
    for policy in bad {
        assert!(policy.check().is_err(), "{policy:?}");
    }
    assert_eq!(Policy::PUBLIC.check(), Ok(()));
}

fn blob(byte: u8) -> BlobRef {
    BlobRef {
        hash: BlobHash([byte; 32]),
        size_bytes: 1,
    }
}

fn file(path: &str, byte: u8) -> OutputFile {
    OutputFile {
        path: path.to_owned(),
        hash: BlobHash([byte; 32]),
        size_bytes: 1,
    }
}

#[test]
fn the_digest_covers_every_part_of_a_result_but_not_the_order_outputs_were_listed_in() {
    let outputs = [file("a", 1), file("b", 2)];
    let base = digest_of(&Outcome::Succeeded, Some(&blob(1)), None, &outputs, 10);
    let reordered = [file("b", 2), file("a", 1)];
    assert_eq!(
        base,
        digest_of(&Outcome::Succeeded, Some(&blob(1)), None, &reordered, 10)
    );
    let variants = [
        digest_of(
            &Outcome::ExitCode { code: 0 },
            Some(&blob(1)),
            None,
            &outputs,
            10,
        ),
        digest_of(
            &Outcome::ExitCode { code: 1 },
            Some(&blob(1)),
            None,
            &outputs,
            10,
        ),
        digest_of(&Outcome::Succeeded, Some(&blob(2)), None, &outputs, 10),
        digest_of(&Outcome::Succeeded, None, Some(&blob(1)), &outputs, 10),
        digest_of(&Outcome::Succeeded, Some(&blob(1)), None, &outputs[..1], 10),
        digest_of(
            &Outcome::Succeeded,
            Some(&blob(1)),
            None,
            &[file("a", 1), file("c", 2)],
            10,
        ),
        digest_of(
            &Outcome::Succeeded,
            Some(&blob(1)),
            None,
            &[file("a", 1), file("b", 3)],
            10,
        ),
        digest_of(&Outcome::Succeeded, Some(&blob(1)), None, &outputs, 11),
    ];
    for (i, variant) in variants.iter().enumerate() {
        assert_ne!(*variant, base, "variant {i}");
    }
    let trap = |message: &str| {
        digest_of(
            &Outcome::Trap {
                message: message.to_owned(),
            },
            None,
            None,
            &[],
            5,
        )
    };
    assert_eq!(trap("unreachable"), trap("wasm `unreachable` executed"));
    let text = base.to_string();
    assert_eq!(Digest::try_from(text).unwrap(), base);
    assert!(Digest::try_from("zz".to_owned()).is_err());
}

#[test]
fn only_what_the_task_itself_decides_is_a_result() {
    assert!(is_claim(&Outcome::Succeeded));
    assert!(is_claim(&Outcome::ExitCode { code: 3 }));
    assert!(is_claim(&Outcome::OutOfFuel));
    assert!(!is_claim(&Outcome::DeadlineExceeded));
    assert!(!is_claim(&Outcome::NodeError {
        message: "disk full".to_owned()
    }));
    assert!(!is_claim(&Outcome::ModuleRejected {
        message: "too large".to_owned()
    }));
}

#[test]
fn a_passed_audit_releases_only_what_came_before_it() {
    let mut window = Window::default();
    for seq in [3, 5, 8] {
        window.hold(seq, seq * 10);
    }
    assert_eq!(window.newest(), Some((8, &80)));
    assert_eq!(window.release_before(6), vec![30, 50]);
    assert_eq!(window.len(), 1);
    assert_eq!(window.remove(8), Some(80));
    assert!(window.is_empty());
    window.hold(9, 90);
    assert_eq!(window.drain(), vec![90]);
}

#[test]
fn a_result_built_on_others_checkpoints_counts_once_for_all_of_them_and_vouches_for_none() {
    let policy = Policy::PUBLIC;
    let tally = |claims: &[Claim]| tally(claims, false, &policy);
    // Owner 3's node resumed from owner 1's checkpoint: owner 1 checking it is no witness.
    let mut resumed = claims(&[(3, 7), (1, 7)]);
    resumed[0].makers = vec![1];
    assert_eq!(tally(&resumed), Tally::Wanting { more: 1 });

    // A result from the start on another owner's trusted node verifies it.
    let mut checked = claims(&[(3, 7), (2, 7)]);
    checked[0].makers = vec![1];
    assert!(matches!(tally(&checked), Tally::Agreed { .. }));

    // A trusted node that resumed from an untrusted one's checkpoint vouches for nothing: two
    // new identities of one ring cannot launder a lie through it.
    let mut laundered = untrusted(claims(&[(1, 9), (4, 9), (3, 9)]));
    laundered[2].trusted = true;
    laundered[2].makers = vec![1];
    assert_eq!(
        tally(&laundered),
        Tally::Wanting { more: 1 },
        "owners 1 and 4 agree and owner 3's result is owner 1's too: no trusted witness vouches"
    );
}

#[test]
fn a_sealed_result_digest_covers_its_outcome_its_plaintext_digest_and_its_fuel() {
    let base = sealed_digest_of(&Outcome::Succeeded, &[7; 32], 10);
    assert_eq!(base, sealed_digest_of(&Outcome::Succeeded, &[7; 32], 10));
    let variants = [
        sealed_digest_of(&Outcome::ExitCode { code: 3 }, &[7; 32], 10),
        sealed_digest_of(&Outcome::Succeeded, &[8; 32], 10),
        sealed_digest_of(&Outcome::Succeeded, &[7; 32], 11),
    ];
    for variant in variants {
        assert_ne!(base, variant);
    }
    // Never equal to a clear result's digest, whatever its blobs.
    assert_ne!(base, digest_of(&Outcome::Succeeded, None, None, &[], 10));
}
