/// A seeded pseudo-random generator: xoshiro256** 1.0 (Blackman and Vigna,
/// <https://prng.di.unimi.it/xoshiro256starstar.c>), its state filled by SplitMix64 as the
/// authors recommend.
///
/// The producer's output must be byte-identical for one seed on every machine and toolchain,
/// so it never uses `SystemRandomNumberGenerator`, and it derives bounded integers and doubles
/// with its own arithmetic below rather than the standard library's `random(in:using:)`, whose
/// algorithm is not part of its contract.
struct SeededGenerator: RandomNumberGenerator {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    init(seed: UInt64) {
        var splitMix = SplitMix64(state: seed)
        s0 = splitMix.next()
        s1 = splitMix.next()
        s2 = splitMix.next()
        s3 = splitMix.next()
    }

    /// Starts from a raw state (for the reference test vectors).
    init(state: (UInt64, UInt64, UInt64, UInt64)) {
        (s0, s1, s2, s3) = state
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    @inline(__always)
    mutating func next() -> UInt64 {
        let result = SeededGenerator.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = SeededGenerator.rotl(s3, 45)
        return result
    }

    /// Uniform in [0, 1), 53 random bits.
    @inline(__always)
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Uniform in [0, n) by multiply-and-shift (Lemire). Without the rejection step the bias
    /// is below n / 2^64, far under anything a simulation can notice.
    @inline(__always)
    mutating func below(_ n: UInt64) -> UInt64 {
        precondition(n > 0)
        return next().multipliedFullWidth(by: n).high
    }

    /// Uniform in `range`, both ends included.
    @inline(__always)
    mutating func inRange(_ range: ClosedRange<Int64>) -> Int64 {
        range.lowerBound + Int64(below(UInt64(range.upperBound - range.lowerBound) + 1))
    }

    /// True with probability `p`.
    @inline(__always)
    mutating func chance(_ p: Double) -> Bool {
        p > 0 && unit() < p
    }
}

/// SplitMix64 (Steele, Lea, Flood), used only to expand a seed into xoshiro's state.
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
