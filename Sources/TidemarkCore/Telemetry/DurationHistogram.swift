/// Durations in seconds counted in logarithmic buckets (2% wide), so that a batch of any size
/// keeps its lag and delay percentiles in a few kilobytes. The maximum is kept exactly.
struct DurationHistogram: Sendable, Equatable {
    /// Bucket 0 holds everything under 1 ms (and negative values from skewed clocks).
    private static let floor = 0.001
    private static let growth = 1.02
    private static let bucketCount = 1400 // up to about 10^9 s
    private static let logGrowth = log(growth)

    private var buckets: [UInt32]
    private(set) var count = 0
    private(set) var maximum = -Double.infinity

    init() { buckets = [] }

    mutating func add(_ seconds: Double) {
        if buckets.isEmpty { buckets = [UInt32](repeating: 0, count: Self.bucketCount) }
        count += 1
        if seconds > maximum { maximum = seconds }
        buckets[Self.bucket(seconds)] += 1
    }

    mutating func merge(_ other: DurationHistogram) {
        guard other.count > 0 else { return }
        if buckets.isEmpty { buckets = [UInt32](repeating: 0, count: Self.bucketCount) }
        for i in 0..<Self.bucketCount { buckets[i] += other.buckets[i] }
        count += other.count
        maximum = max(maximum, other.maximum)
    }

    private static func bucket(_ seconds: Double) -> Int {
        guard seconds >= floor else { return 0 }
        return min(bucketCount - 1, 1 + Int(log(seconds / floor) / logGrowth))
    }

    /// The value below which a fraction `q` of the samples lie (a bucket's geometric middle,
    /// within 1% of the true value; never above the exact maximum).
    func quantile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = Int((Double(count - 1) * q).rounded()) + 1
        var seen = 0
        for (index, n) in buckets.enumerated() {
            seen += Int(n)
            if seen >= rank {
                guard index > 0 else { return maximum < 0 ? maximum : 0 } // under 1 ms
                let low = Self.floor * pow(Self.growth, Double(index - 1))
                return min(low * Self.growth.squareRoot(), maximum)
            }
        }
        return maximum
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
