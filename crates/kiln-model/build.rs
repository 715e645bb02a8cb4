//! The build script of every crate that links LibTorch: the rpath, nothing else.
include!("libtorch_rpath.rs");

fn main() {
    libtorch_rpath();
}
