#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(key) = std::str::from_utf8(data) {
        firelake::fuzzing::key_mapping(key);
    }
});
