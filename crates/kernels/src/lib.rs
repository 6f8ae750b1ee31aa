//! CPU-bound kernels, written once and compiled twice: natively into the benchmark and to
//! `wasm32-wasip1` as the `kernels` guest, so `crowdcloud bench sandbox` compares the same code.
//!
//! Each kernel returns a checksum that depends on every step, so no compiler can skip work, and
//! the native and WebAssembly runs can be checked against each other. The code uses only
//! fixed-width integers and basic float arithmetic (`+ - * /` and `sqrt`), whose results are
//! the same on every platform, so the checksums match bit for bit.
//!
//! No dependencies and no `usize` arithmetic that could overflow differently on 32-bit wasm.

/// A kernel and the size of its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Escape-time Mandelbrot over a `size`×`size` grid, 256 iterations at most per point.
    Mandelbrot,
    /// SHA-256 over a 64 KiB buffer, `size` times, each round hashing the previous digest in.
    Sha256,
    /// The classic five-body simulation of the outer planets, `size` steps.
    Nbody,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::Mandelbrot, Kernel::Sha256, Kernel::Nbody];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Mandelbrot => "mandelbrot",
            Kernel::Sha256 => "sha256",
            Kernel::Nbody => "nbody",
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|kernel| kernel.name() == name)
    }

    /// A size that takes a few hundred milliseconds natively on a desktop core.
    pub fn default_size(self) -> u32 {
        match self {
            Kernel::Mandelbrot => 1000,
            Kernel::Sha256 => 2000,
            Kernel::Nbody => 2_000_000,
        }
    }

    /// Runs the kernel and returns its checksum as text.
    pub fn run(self, size: u32) -> String {
        match self {
            Kernel::Mandelbrot => format!("{:016x}", mandelbrot(size)),
            Kernel::Sha256 => hex(&sha256_rounds(size)),
            Kernel::Nbody => format!("{:016x}", nbody(size).to_bits()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sum of escape iterations over a `side`×`side` grid of [-2, 1] × [-1.5, 1.5].
pub fn mandelbrot(side: u32) -> u64 {
    const ITERATIONS_MAX: u32 = 256;
    let mut total = 0u64;
    for row in 0..side {
        let ci = -1.5 + 3.0 * f64::from(row) / f64::from(side);
        for column in 0..side {
            let cr = -2.0 + 3.0 * f64::from(column) / f64::from(side);
            let (mut zr, mut zi) = (0.0f64, 0.0f64);
            let mut iterations = 0;
            while iterations < ITERATIONS_MAX && zr * zr + zi * zi <= 4.0 {
                let next_r = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = next_r;
                iterations += 1;
            }
            total += u64::from(iterations);
        }
    }
    total
}

const SHA256_K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 (FIPS 180-4) of `message`.
pub fn sha256(message: &[u8]) -> [u8; 32] {
    let mut state: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut blocks = message.chunks_exact(64);
    for block in blocks.by_ref() {
        compress(&mut state, block);
    }
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bit_len = (message.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_be_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut digest = [0u8; 32];
    for (chunk, word) in digest.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

fn compress(state: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 64];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let choice = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(choice)
            .wrapping_add(SHA256_K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let majority = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(majority);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

/// Hashes a 64 KiB buffer `rounds` times, folding each digest into the buffer.
pub fn sha256_rounds(rounds: u32) -> [u8; 32] {
    let mut buffer: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let mut digest = [0u8; 32];
    for round in 0..rounds {
        digest = sha256(&buffer);
        let at = (round % 2048) * 32;
        buffer[at as usize..at as usize + 32].copy_from_slice(&digest);
    }
    digest
}

/// Energy of the five-body system after `steps` steps of 0.01 days.
pub fn nbody(steps: u32) -> f64 {
    const SOLAR_MASS: f64 = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
    const DAYS_PER_YEAR: f64 = 365.24;
    const DT: f64 = 0.01;
    let mut bodies: [[f64; 7]; 5] = [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, SOLAR_MASS],
        [
            4.841_431_442_464_72e0,
            -1.160_320_044_027_428_4e0,
            -1.036_220_444_711_231_1e-1,
            1.660_076_642_744_037e-3 * DAYS_PER_YEAR,
            7.699_011_184_197_404e-3 * DAYS_PER_YEAR,
            -6.904_600_169_720_63e-5 * DAYS_PER_YEAR,
            9.547_919_384_243_266e-4 * SOLAR_MASS,
        ],
        [
            8.343_366_718_244_58e0,
            4.124_798_564_124_305e0,
            -4.035_234_171_143_214e-1,
            -2.767_425_107_268_624e-3 * DAYS_PER_YEAR,
            4.998_528_012_349_172e-3 * DAYS_PER_YEAR,
            2.304_172_975_737_639_3e-5 * DAYS_PER_YEAR,
            2.858_859_806_661_308e-4 * SOLAR_MASS,
        ],
        [
            1.289_436_956_213_913_1e1,
            -1.511_115_140_169_863_1e1,
            -2.233_075_788_926_557_3e-1,
            2.964_601_375_647_616e-3 * DAYS_PER_YEAR,
            2.378_471_739_594_809_5e-3 * DAYS_PER_YEAR,
            -2.965_895_685_402_375_6e-5 * DAYS_PER_YEAR,
            4.366_244_043_351_563e-5 * SOLAR_MASS,
        ],
        [
            1.537_969_711_485_091_1e1,
            -2.591_931_460_998_796_4e1,
            1.792_587_729_503_711_8e-1,
            2.680_677_724_903_893_2e-3 * DAYS_PER_YEAR,
            1.628_241_700_382_423e-3 * DAYS_PER_YEAR,
            -9.515_922_545_197_159e-5 * DAYS_PER_YEAR,
            5.151_389_020_466_114_5e-5 * SOLAR_MASS,
        ],
    ];
    // Move the system's centre of mass to rest.
    let mut momentum = [0.0f64; 3];
    for body in &bodies {
        for axis in 0..3 {
            momentum[axis] += body[3 + axis] * body[6];
        }
    }
    for axis in 0..3 {
        bodies[0][3 + axis] = -momentum[axis] / SOLAR_MASS;
    }
    for _ in 0..steps {
        for i in 0..5 {
            for j in i + 1..5 {
                let dx = bodies[i][0] - bodies[j][0];
                let dy = bodies[i][1] - bodies[j][1];
                let dz = bodies[i][2] - bodies[j][2];
                let distance_squared = dx * dx + dy * dy + dz * dz;
                let distance = distance_squared.sqrt();
                let magnitude = DT / (distance_squared * distance);
                let (mass_i, mass_j) = (bodies[i][6], bodies[j][6]);
                bodies[i][3] -= dx * mass_j * magnitude;
                bodies[i][4] -= dy * mass_j * magnitude;
                bodies[i][5] -= dz * mass_j * magnitude;
                bodies[j][3] += dx * mass_i * magnitude;
                bodies[j][4] += dy * mass_i * magnitude;
                bodies[j][5] += dz * mass_i * magnitude;
            }
        }
        for body in &mut bodies {
            body[0] += DT * body[3];
            body[1] += DT * body[4];
            body[2] += DT * body[5];
        }
    }
    let mut energy = 0.0;
    for i in 0..5 {
        let body = bodies[i];
        energy += 0.5 * body[6] * (body[3] * body[3] + body[4] * body[4] + body[5] * body[5]);
        for other in &bodies[i + 1..] {
            let dx = body[0] - other[0];
            let dy = body[1] - other[1];
            let dz = body[2] - other[2];
            energy -= body[6] * other[6] / (dx * dx + dy * dy + dz * dz).sqrt();
        }
    }
    energy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_test_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn nbody_conserves_energy_as_the_reference_says() {
        // The benchmarks game's published energies for 0 and 1000 steps.
        assert_eq!(format!("{:.9}", nbody(0)), "-0.169075164");
        assert_eq!(format!("{:.9}", nbody(1000)), "-0.169087605");
    }

    #[test]
    fn mandelbrot_counts_are_stable() {
        // Every point of a 1×1 grid is c = -2 - 1.5i, which escapes after one iteration.
        assert_eq!(mandelbrot(1), 1);
        assert_eq!(mandelbrot(64), mandelbrot(64));
        assert!(mandelbrot(64) > 64 * 64);
    }

    #[test]
    fn kernels_are_named() {
        for kernel in Kernel::ALL {
            assert_eq!(Kernel::from_name(kernel.name()), Some(kernel));
        }
    }
}
