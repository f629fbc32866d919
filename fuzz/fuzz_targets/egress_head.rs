//! The egress proxy's request heads: substitution only where a bound binding allows.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    secret_sidecar_fuzz::egress_head(data);
});
