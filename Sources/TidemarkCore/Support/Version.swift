public enum TidemarkVersion {
    public static let current = "0.1.0"
}
