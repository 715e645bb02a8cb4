//! A server's thread plan ([`InferenceThreads`]): only the inference thread
//! starts helper threads for LibTorch's parallel kernels. Its own test binary,
//! since it changes the process-wide thread count.

use kiln_model::device::{self, InferenceThreads};

/// The threads this process has now.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").expect("Linux lists a process's threads").count()
}

/// A kernel LibTorch splits across its threads (a large element-wise sum).
fn parallel_kernel() {
    let ones = tch::Tensor::ones([1 << 22], (tch::Kind::Float, tch::Device::Cpu));
    let doubled = &ones + &ones;
    assert_eq!(doubled.double_value(&[0]), 2.0);
}

/// On a new thread: runs `prepare`, then the parallel kernel; returns that
/// thread's LibTorch thread count and the process's threads before and after.
fn kernel_on_new_thread(prepare: impl FnOnce() + Send + 'static) -> (usize, usize, usize) {
    std::thread::spawn(move || {
        prepare();
        let before = thread_count();
        parallel_kernel();
        (device::threads(), before, thread_count())
    })
    .join()
    .expect("the thread ran")
}

#[test]
fn only_the_inference_thread_runs_kernels_in_parallel() {
    device::configure("cpu", 2).expect("cpu is a device");
    let threads = InferenceThreads::reserve();
    assert_eq!(threads.count(), 2);
    assert_eq!(device::threads(), 1, "the thread that reserved runs serially");

    // Another thread (a model loading beside the server) runs serially and starts no helpers.
    let (count, before, after) = kernel_on_new_thread(|| {});
    assert_eq!(count, 1);
    assert_eq!(after, before, "a serial thread started helper threads");

    // The inference thread runs on the reserved count, with a helper.
    let (count, before, after) = kernel_on_new_thread(move || threads.take());
    assert_eq!(count, 2);
    assert!(after > before, "the inference thread started no helper ({before} -> {after} threads)");
}
