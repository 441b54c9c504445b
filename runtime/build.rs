//! Gives libcosmoe.so its SONAME, so that programs linked against it record `libcosmoe.so` rather
//! than the path it was built at (Android's loader and CMake's imported libraries need this).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcosmoe.so");
    }
    println!("cargo:rerun-if-changed=runtime/build.rs");
}
