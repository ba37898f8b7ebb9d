#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| firelake::fuzzing::firehose_json(data));
