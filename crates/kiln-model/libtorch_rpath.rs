/// Bakes LibTorch's lib folder into the binaries and test binaries of the crate
/// whose build script calls it, as an rpath, so `cargo test` and the stage
/// binaries run with no LD_LIBRARY_PATH (torch-sys sets none itself). The one
/// copy: kiln-model's build.rs (which the crates that link LibTorch name as
/// their `build`) and kiln-torch-ops's include it.
fn libtorch_rpath() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
}
