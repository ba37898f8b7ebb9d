#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the body is split across frames.
    if let Some((&split, body)) = data.split_first() {
        firelake::fuzzing::aws_chunked(body, split as usize + 1);
    }
});
