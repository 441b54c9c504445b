#![no_main]
//! config.json + a safetensors file (cosmoe_loader::fuzzing::safetensors_config).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cosmoe_loader::fuzzing::safetensors_config(data));
