#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first eight bytes are the object's size.
    if data.len() >= 8
        && let Ok(header) = std::str::from_utf8(&data[8..])
    {
        let size = u64::from_le_bytes(data[..8].try_into().unwrap());
        firelake::fuzzing::range_and_conditions(header, size);
    }
});
