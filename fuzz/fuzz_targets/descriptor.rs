//! Descriptor parsing of arbitrary bytes: no panic, no value in an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secret_sidecar_fuzz::descriptor(data));
