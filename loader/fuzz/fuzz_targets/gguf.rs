#![no_main]
//! The GGUF reader, model config, tokenizer and every tensor (cosmoe_loader::fuzzing::gguf).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cosmoe_loader::fuzzing::gguf(data));
