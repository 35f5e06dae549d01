#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    beatmatch_readers::feed(beatmatch_readers::Target::StepFrames, data);
});
