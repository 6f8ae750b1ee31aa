//! WebAssembly proposals beyond 1.0, by the names nodes and the coordinator give them. A node
//! reports those its engine compiles ([`crate::Capabilities::wasm_features`]); the coordinator
//! finds those a module uses when it validates it, and sends the module only to nodes that
//! report them all.

/// Every proposal name either side may use, in the order of their bits (see [`feature_bits`]).
pub const FEATURES: &[&str] = &[
    "bulk-memory",
    "exceptions",
    "extended-const",
    "memory64",
    "multi-memory",
    "reference-types",
    "relaxed-simd",
    "saturating-float-to-int",
    "sign-extension",
    "simd",
    "tail-call",
];

/// Feature names a node may report; more is a malformed registration.
pub const FEATURES_MAX: usize = 32;

/// Bytes of one feature name.
pub const FEATURE_BYTES_MAX: usize = 32;

/// The features of `names` as bits of [`FEATURES`]; names this release does not know are left
/// out, so a newer node's report reads as what this coordinator understands of it.
pub fn feature_bits<S: AsRef<str>>(names: &[S]) -> u32 {
    names
        .iter()
        .filter_map(|name| FEATURES.iter().position(|known| *known == name.as_ref()))
        .fold(0, |bits, index| bits | 1 << index)
}

/// The names of the features in `bits`, in [`FEATURES`] order.
pub fn feature_names(bits: u32) -> Vec<&'static str> {
    FEATURES
        .iter()
        .enumerate()
        .filter(|(index, _)| bits & (1 << index) != 0)
        .map(|(_, name)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bits_go_both_ways_and_unknown_names_are_left_out() {
        assert!(FEATURES.len() <= 32, "the bits fit a u32");
        let bits = feature_bits(&["simd", "exceptions", "stack-switching"]);
        assert_eq!(feature_names(bits), ["exceptions", "simd"]);
        assert_eq!(
            feature_bits(&feature_names(u32::MAX)),
            (1 << FEATURES.len()) - 1
        );
        assert_eq!(feature_bits::<&str>(&[]), 0);
    }
}
