use crate::boot_options::{
    BootMode, BootOptionError, BootOptions, Invalidation, WorkloadLength, DEFAULT_DIRECT_MAP_MIB,
};
use crate::kernel_test;

kernel_test! {
    /// Every documented key is understood; absent keys take their defaults.
    fn parses_every_key() {
        let options = BootOptions::parse("mode=test test=frames dmap=512 seed=42").unwrap();
        assert_eq!(options.mode, BootMode::Test);
        assert_eq!(options.test_filter, Some("frames"));
        assert_eq!(options.direct_map_mib, 512);
        assert_eq!(options.seed, 42);

        let run = BootOptions::parse("mode=run ops=5000 icount=1 pairs=300").unwrap();
        assert_eq!(run.workload_length, Some(WorkloadLength::Operations(5000)));
        assert!(run.icount);
        assert_eq!(run.bench_pairs, Some(300));
        let timed = BootOptions::parse("secs=3").unwrap();
        assert_eq!(timed.workload_length, Some(WorkloadLength::Seconds(3)));
        let deferred = BootOptions::parse("mode=run invalidation=deferred").unwrap();
        assert_eq!(deferred.invalidation, Invalidation::Deferred);
        let strict = BootOptions::parse("invalidation=strict").unwrap();
        assert_eq!(strict.invalidation, Invalidation::Strict);

        let defaults = BootOptions::parse("").unwrap();
        assert_eq!(defaults.mode, BootMode::Run);
        assert_eq!(defaults.test_filter, None);
        assert_eq!(defaults.direct_map_mib, DEFAULT_DIRECT_MAP_MIB);
        assert_eq!(defaults.invalidation, Invalidation::Strict);
    }
}

kernel_test! {
    /// Unknown keys and bad values are refused with a message naming them.
    fn rejects_unknown_keys_and_bad_values() {
        assert_eq!(BootOptions::parse("colour=blue"), Err(BootOptionError::UnknownKey("colour")));
        assert_eq!(BootOptions::parse("verbose"), Err(BootOptionError::MissingValue("verbose")));
        assert!(matches!(
            BootOptions::parse("dmap=3"),
            Err(BootOptionError::BadValue { key: "dmap", .. })
        ));
        assert!(matches!(
            BootOptions::parse("dmap=2"),
            Err(BootOptionError::BadValue { key: "dmap", .. })
        ));
        assert!(matches!(
            BootOptions::parse("mode=fast"),
            Err(BootOptionError::BadValue { key: "mode", .. })
        ));
        for refused in [
            "ops=0",
            "secs=x",
            "pairs=-1",
            "icount=2",
            "ops=5 secs=5",
            "invalidation=lazy",
            "invalidation=",
        ] {
            assert!(
                matches!(BootOptions::parse(refused), Err(BootOptionError::BadValue { .. })),
                "{refused} must be refused"
            );
        }
        let message = alloc::format!("{}", BootOptionError::UnknownKey("colour"));
        assert_eq!(message, "unknown boot option 'colour'");
    }
}
