use crate::kernel_test;

kernel_test! {
    /// The harness runs a test at all.
    fn harness_runs_a_test() {
        assert_eq!(1 + 1, 2);
    }
}
