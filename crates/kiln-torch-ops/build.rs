//! Compiles src/int8.cpp, src/adamw.cpp, src/layer_norm.cpp, src/threads.cpp and src/device.cpp against the LibTorch that torch-sys links (the
//! `LIBTORCH` folder `.cargo/config.toml` names), with the flags torch-sys
//! uses for its own C++ (C++17, the C++11 ABI that PyPI's torch is built with),
//! and bakes the LibTorch lib folder in as an rpath for this crate's tests.
use std::path::PathBuf;

include!("../kiln-model/libtorch_rpath.rs");

fn main() {
    libtorch_rpath();
    println!("cargo:rerun-if-changed=src/int8.cpp");
    println!("cargo:rerun-if-changed=src/adamw.cpp");
    println!("cargo:rerun-if-changed=src/layer_norm.cpp");
    println!("cargo:rerun-if-changed=src/threads.cpp");
    println!("cargo:rerun-if-changed=src/device.cpp");
    let libtorch = PathBuf::from(std::env::var("LIBTORCH").unwrap_or_else(|_| {
        panic!("LIBTORCH is not set: run `make setup` (it installs LibTorch into .libtorch, which .cargo/config.toml names)")
    }));
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/int8.cpp")
        .file("src/adamw.cpp")
        .file("src/layer_norm.cpp")
        .file("src/threads.cpp")
        .file("src/device.cpp")
        .compile("kiln_torch_ops");
}
