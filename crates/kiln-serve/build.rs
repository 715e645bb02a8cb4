//! Bakes LibTorch's lib folder into this crate's test binaries as an rpath, so
//! `cargo test` runs with no LD_LIBRARY_PATH (torch-sys sets none itself).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
}
