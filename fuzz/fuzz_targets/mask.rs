//! The masker: chunked equals whole, and no registered value survives.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: secret_sidecar_fuzz::MaskCase| secret_sidecar_fuzz::masking(&case));
