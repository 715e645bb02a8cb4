//! Bakes LibTorch's lib folder into the binaries and test binaries of a crate
//! that links it, as an rpath, so `cargo test` and the stage binaries run with
//! no LD_LIBRARY_PATH (torch-sys sets none itself). The one copy: every crate
//! that links LibTorch names this file as its `build` script.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
}
