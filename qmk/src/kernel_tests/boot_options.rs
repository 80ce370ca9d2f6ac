use crate::boot_options::{BootMode, BootOptionError, BootOptions, DEFAULT_DIRECT_MAP_MIB};
use crate::kernel_test;

kernel_test! {
    /// Every documented key is understood; absent keys take their defaults.
    fn parses_every_key() {
        let options = BootOptions::parse("mode=test test=frames dmap=512 seed=42").unwrap();
        assert_eq!(options.mode, BootMode::Test);
        assert_eq!(options.test_filter, Some("frames"));
        assert_eq!(options.direct_map_mib, 512);
        assert_eq!(options.seed, 42);

        let defaults = BootOptions::parse("").unwrap();
        assert_eq!(defaults.mode, BootMode::Run);
        assert_eq!(defaults.test_filter, None);
        assert_eq!(defaults.direct_map_mib, DEFAULT_DIRECT_MAP_MIB);
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
        let message = alloc::format!("{}", BootOptionError::UnknownKey("colour"));
        assert_eq!(message, "unknown boot option 'colour'");
    }
}
