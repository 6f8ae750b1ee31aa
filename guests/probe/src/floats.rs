//! The `floats` mode: NaN-producing operations whose bit patterns differ between CPUs unless the
//! runtime canonicalises NaNs.

use std::hint::black_box;

/// Each result as `(name, bits, hex digits)`; inputs pass through `black_box` so the compiler
/// cannot fold them into constants and the CPU (or the runtime) decides the bits.
pub fn results() -> Vec<(&'static str, u64, usize)> {
    // Two separate zeros: clippy rejects `x / x`, and the CPU decides the answer either way.
    let zero = black_box(0.0f64);
    let other_zero = black_box(0.0f64);
    let minus_one = black_box(-1.0f64);
    let nan = black_box(f64::NAN);
    let payload = black_box(f64::from_bits(0x7ff4_0000_dead_beef));
    let negative_payload = black_box(f64::from_bits(0xfff8_0000_0000_1234));
    let payload32 = black_box(f32::from_bits(0x7fa0_1234));
    let zero32 = black_box(0.0f32);
    let other_zero32 = black_box(0.0f32);
    let wide = |name, v: f64| (name, v.to_bits(), 16);
    let narrow = |name, v: f32| (name, u64::from(v.to_bits()), 8);
    vec![
        wide("zero_div_zero", zero / other_zero),
        wide("neg_zero_div_zero", -(zero / other_zero)),
        wide("sqrt_neg_one", minus_one.sqrt()),
        wide("nan_times_two", nan * black_box(2.0)),
        wide("nan_min_one", nan.min(black_box(1.0))),
        wide("nan_max_one", nan.max(black_box(1.0))),
        wide("payload_plus_one", payload + black_box(1.0)),
        wide("neg_payload_times_one", negative_payload * black_box(1.0)),
        wide(
            "inf_minus_inf",
            black_box(f64::INFINITY) - black_box(f64::INFINITY),
        ),
        wide("promote_f32_payload", f64::from(payload32)),
        narrow("f32_zero_div_zero", zero32 / other_zero32),
        narrow("f32_payload_times_one", payload32 * black_box(1.0f32)),
        narrow("demote_f64_payload", payload as f32),
    ]
}

pub fn run() {
    for (name, bits, digits) in results() {
        println!("{name} 0x{bits:0digits$x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_is_a_nan_except_min_and_max() {
        for (name, bits, digits) in results() {
            let is_nan = if digits == 16 {
                f64::from_bits(bits).is_nan()
            } else {
                f32::from_bits(bits as u32).is_nan()
            };
            let expect_nan = !matches!(name, "nan_min_one" | "nan_max_one");
            assert_eq!(is_nan, expect_nan, "{name} = {bits:#x}");
        }
    }
}
