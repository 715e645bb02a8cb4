//! Hooks the tests use to drive the binaries from outside: stop at a named
//! point (to SIGKILL a stage at its worst moment), panic where a stage starts,
//! fail a write. They exist only with the `test-hooks` feature, which the
//! workspace's tests enable and release builds leave out: a shipped binary
//! ignores every `KILN_TEST_*` variable.

/// With `KILN_TEST_PAUSE_AT=<point>`, says `KILN_TEST_PAUSE_AT: paused at
/// <point>` on stderr and waits to be killed.
#[inline]
pub fn pause_at(point: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("KILN_TEST_PAUSE_AT").is_ok_and(|asked| asked == point) {
        eprintln!("KILN_TEST_PAUSE_AT: paused at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = point;
}

/// With `KILN_TEST_PANIC=<stage>`, panics.
#[inline]
pub fn panic_if_asked(stage: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("KILN_TEST_PANIC").is_ok_and(|asked| asked == stage) {
        panic!("KILN_TEST_PANIC asked {stage} to panic");
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = stage;
}

/// Whether `text` is the test hook's magic `word` (only with the feature):
/// how a test plants a failure inside a running server.
#[inline]
pub fn is_planted(text: &str, word: &str) -> bool {
    #[cfg(feature = "test-hooks")]
    return text == word;
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = (text, word);
        false
    }
}

/// With a file named `marker` in `dir`, a write there fails as on a full disk.
#[inline]
pub fn disk_full(dir: &std::path::Path, marker: &str) -> std::io::Result<()> {
    #[cfg(feature = "test-hooks")]
    if dir.join(marker).exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device (test hook)"));
    }
    let _ = (dir, marker);
    Ok(())
}

/// With `KILN_TEST_NO_BF16=1`, the device is taken to have no fast bf16
/// matrix products: how a test reaches that path on a CPU that has them.
#[inline]
pub fn hide_bf16() -> bool {
    #[cfg(feature = "test-hooks")]
    return std::env::var("KILN_TEST_NO_BF16").is_ok_and(|value| value == "1");
    #[cfg(not(feature = "test-hooks"))]
    false
}
