// The calling thread's CPU thread count, without touching the process-wide
// default. at::set_num_threads changes both (and rebuilds a thread pool when
// the count changes), so it cannot be switched per batch, nor used to keep one
// thread serial while another runs in parallel.

#include <ATen/Parallel.h>

#include <dlfcn.h>

// Exported by libtorch_cpu; mkl.h maps mkl_set_num_threads_local to it (the
// lower-case symbol is the Fortran entry, which takes a pointer).
extern "C" int MKL_Set_Num_Threads_Local(int);

extern "C" {

// Returns the count the calling thread had, or -1 when the OpenMP runtime that
// LibTorch uses cannot be found (nothing is changed then).
int kiln_set_local_threads(int threads) {
    // LibTorch's own per-thread set-up runs first (it would otherwise apply the
    // process-wide count later, over this one).
    int previous = at::get_num_threads();
    // libgomp comes with LibTorch, loaded as one of its dependencies; it is not
    // on this crate's link line, so it is looked up, once.
    using SetThreads = void (*)(int);
    static SetThreads omp_set_num_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    if (omp_set_num_threads == nullptr) {
        return -1;
    }
    omp_set_num_threads(threads);
    MKL_Set_Num_Threads_Local(threads);
    return previous;
}

}  // extern "C"
