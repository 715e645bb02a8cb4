//! Writing a stage's outputs so that a failure never leaves a half result.
//!
//! A stage writes every file into a staging folder inside its output folder
//! (same file system) and [`StagedOutput::commit`]s at the end: each file is
//! renamed into place, the manifest last, so a manifest on disk means the files
//! beside it are complete. A stage that fails or is killed before the commit
//! leaves the previous outputs untouched; the staging folder is removed when
//! dropped, and a leftover one (SIGKILL) is ignored and cleared by the next run.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::KILN_VERSION;

const STAGING_PREFIX: &str = ".kiln-staging-";
/// A [`StreamedFile`] before its commit.
pub const STREAMING_PREFIX: &str = ".kiln-streaming-";

pub struct StagedOutput {
    dir: PathBuf,
    staging: tempfile::TempDir,
    files: Vec<String>,
}

impl StagedOutput {
    /// Creates `dir` if needed and a staging folder in it: an unwritable output
    /// folder fails here, before any work is done.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder {}", dir.display()))?;
        clear_stale_staging(dir);
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(dir)
            .with_context(|| format!("cannot write to output folder {}", dir.display()))?;
        Ok(Self { dir: dir.to_owned(), staging, files: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the final file `name` will be, once committed.
    pub fn final_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens the staged file `name` for writing, to be committed later.
    pub fn create(&mut self, name: &str) -> Result<(PathBuf, BufWriter<File>)> {
        let path = self.stage(name);
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok((path, BufWriter::new(file)))
    }

    /// The staged path of `name`, for writers that want a path (safetensors, copies);
    /// whatever is there at commit time is moved into place.
    pub fn stage(&mut self, name: &str) -> PathBuf {
        if !self.files.iter().any(|f| f == name) {
            self.files.push(name.to_owned());
        }
        self.staging.path().join(name)
    }

    /// Stages a copy of `source` as `name`.
    pub fn copy(&mut self, source: &Path, name: &str) -> Result<()> {
        let path = self.stage(name);
        std::fs::copy(source, &path)
            .with_context(|| format!("cannot copy {} to {}", source.display(), path.display()))?;
        Ok(())
    }

    pub fn write_json(&mut self, name: &str, value: &impl Serialize) -> Result<()> {
        let (path, mut writer) = self.create(name)?;
        serde_json::to_writer_pretty(&mut writer, value).with_context(|| format!("cannot write {}", path.display()))?;
        writer.write_all(b"\n")?;
        writer.flush().with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Stages a small text or binary file written in one go (labels, settings, a report).
    pub fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let (path, mut writer) = self.create(name)?;
        writer
            .write_all(bytes)
            .and_then(|()| writer.flush())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// sha256 of each staged file so far, by final path: for the manifest.
    pub fn hashes(&self) -> Result<Vec<FileHash>> {
        self.files
            .iter()
            .map(|name| {
                Ok(FileHash {
                    path: self.final_path(name).display().to_string(),
                    sha256: sha256_file(&self.staging.path().join(name))?,
                })
            })
            .collect()
    }

    /// [`Self::commit`] with `manifest`'s outputs filled in: the hash of every
    /// staged file, which is what a stage's manifest lists.
    pub fn commit_manifest(self, manifest_name: &str, mut manifest: Manifest) -> Result<()> {
        manifest.outputs = self.hashes()?;
        self.commit(manifest_name, &manifest)
    }

    /// Renames every staged file into place, then writes `manifest` as `manifest_name` last.
    /// Every file is synced before its rename and the folder after the last,
    /// so a manifest that survives a power cut vouches for files that did too.
    pub fn commit(mut self, manifest_name: &str, manifest: &Manifest) -> Result<()> {
        let data_files = std::mem::take(&mut self.files);
        self.write_json(manifest_name, manifest)?;
        let names: Vec<&str> = data_files.iter().map(String::as_str).chain([manifest_name]).collect();
        for name in &names {
            sync_file(&self.staging.path().join(name))?;
        }
        for (moved, name) in names.iter().enumerate() {
            if moved == 1 {
                crate::test_hooks::pause_at("commit");
            }
            let from = self.staging.path().join(name);
            let to = self.dir.join(name);
            std::fs::rename(&from, &to).with_context(|| format!("cannot move {} into place", to.display()))?;
        }
        sync_dir(&self.dir)
    }
}

/// Flushes a file's contents to the disk.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|file| file.sync_all()).with_context(|| format!("cannot sync {}", path.display()))
}

/// Flushes a folder's entries (a rename or a new file in it) to the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|file| file.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

/// Syncs every file of a folder (not recursing) and the folder itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if path.is_file() {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// Moves the finished folder `new` to `target`, replacing whatever is there,
/// so that `target` always exists whole: the two are exchanged in one
/// `renameat2(RENAME_EXCHANGE)` and the old folder is removed after. Where the
/// file system cannot exchange, the old folder is renamed aside first, and a
/// crash in that moment is undone by the next call (the aside folder is put
/// back), never deleted.
pub fn swap_dir_into_place(new: &Path, target: &Path) -> Result<()> {
    let aside = aside_path(target);
    recover_interrupted_swap(target)?;
    sync_tree(new)?;
    let parent = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if std::fs::symlink_metadata(target).is_err() {
        std::fs::rename(new, target).with_context(|| format!("cannot move {} into place", target.display()))?;
        return sync_dir(parent);
    }
    // An old folder left by an interrupted swap, with the target whole beside it.
    remove_dir_if_present(&aside)?;
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, new, cwd, target, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => {
            sync_dir(parent)?;
            crate::test_hooks::pause_at("swap:exchanged");
            // `new` now holds the old folder: name it as a leftover the next call recognises, then remove it.
            std::fs::rename(new, &aside).with_context(|| format!("cannot move {} aside", new.display()))?;
        }
        Err(error)
            if [rustix::io::Errno::INVAL, rustix::io::Errno::NOSYS, rustix::io::Errno::NOTSUP].contains(&error) =>
        {
            std::fs::rename(target, &aside).with_context(|| format!("cannot move {} aside", target.display()))?;
            crate::test_hooks::pause_at("swap:aside");
            std::fs::rename(new, target).with_context(|| format!("cannot move {} into place", target.display()))?;
            sync_dir(parent)?;
        }
        Err(error) => {
            return Err(std::io::Error::from(error))
                .with_context(|| format!("cannot swap {} into place", target.display()));
        }
    }
    remove_dir_if_present(&aside)
}

/// Where [`swap_dir_into_place`] keeps the old folder while it swaps.
pub fn aside_path(target: &Path) -> PathBuf {
    let name = target.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.old"))
}

/// Undoes a swap that stopped between moving the old folder aside and moving
/// the new one in: the old folder goes back. Whether the target is whole is
/// for the caller to judge.
pub fn recover_interrupted_swap(target: &Path) -> Result<()> {
    let aside = aside_path(target);
    if std::fs::symlink_metadata(target).is_err() && aside.is_dir() {
        tracing::warn!("{} was set aside by an interrupted write: putting it back", target.display());
        std::fs::rename(&aside, target).with_context(|| format!("cannot restore {}", target.display()))?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Staging folders left by a killed run are never read; clear them quietly.
fn clear_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

impl FileHash {
    pub fn of(path: &Path) -> Result<Self> {
        Ok(Self { path: path.display().to_string(), sha256: sha256_file(path)? })
    }
}

/// What a stage read, wrote and with which settings: written beside its outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub stage: &'static str,
    pub kiln_version: &'static str,
    pub inputs: Vec<FileHash>,
    pub outputs: Vec<FileHash>,
    /// The stage's resolved config section.
    pub config: serde_json::Value,
    /// The stage's own figures: counts, drops, lengths.
    pub report: serde_json::Value,
}

impl Manifest {
    /// Its name beside a stage's outputs (most stages write it last: their done file).
    pub const FILE: &str = "manifest.json";

    pub fn new(stage: &'static str, config: &impl Serialize, report: &impl Serialize) -> Self {
        Self {
            stage,
            kiln_version: KILN_VERSION,
            inputs: Vec::new(),
            outputs: Vec::new(),
            config: serde_json::to_value(config).expect("configs serialise. This is a bug."),
            report: serde_json::to_value(report).expect("reports serialise. This is a bug."),
        }
    }
}

/// Writes one file whole or not at all: a temp file beside it, synced, then
/// renamed over it. For the small records that are rewritten in place (run
/// records, the model registry's index).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    sync_dir(dir)
}

/// One large file streamed into a temp file beside its target and renamed
/// over it by [`StreamedFile::commit`]; dropped uncommitted (an error half
/// way), the temp file goes and the target is untouched. For outputs written
/// a piece at a time (`predict`'s row groups).
pub struct StreamedFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl StreamedFile {
    /// Creates the target's folder if needed; an unwritable one fails here, before any work.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let temp = tempfile::Builder::new()
            .prefix(STREAMING_PREFIX)
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        Ok(Self { temp, target: target.to_owned() })
    }

    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Syncs the finished file and renames it into place, readable by others
    /// (temp files are 0600), then syncs its folder.
    pub fn commit(self) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.temp.path(), std::fs::Permissions::from_mode(0o644))?;
        }
        self.temp.as_file().sync_all().with_context(|| format!("cannot sync {}", self.temp.path().display()))?;
        self.temp.persist(&self.target).with_context(|| format!("cannot move {} into place", self.target.display()))?;
        let dir = self.target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_dir(dir)
    }
}

/// Unix milliseconds, the timestamps of run records and registry entries.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The part of an earlier stage's manifest that later stages read back: the
/// settings it ran with and the files it read and wrote.
#[derive(Debug, serde::Deserialize)]
pub struct StageManifest<C> {
    pub config: C,
    #[serde(default)]
    pub inputs: Vec<FileHash>,
    #[serde(default)]
    pub outputs: Vec<FileHash>,
}

/// Reads an earlier stage's manifest; `None` (with a warning when it exists but
/// does not parse) when there is none to read.
/// Reads a JSON file kiln wrote, naming what it should be (`an eval
/// metrics.json`) when it does not parse.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// `read_json`, or `None` when the file does not exist.
pub fn read_json_if_present<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    if path.is_file() { read_json(path, what).map(Some) } else { Ok(None) }
}

pub fn read_manifest<C: for<'de> serde::Deserialize<'de>>(path: &Path) -> Option<StageManifest<C>> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(manifest) => Some(manifest),
        Err(error) => {
            tracing::warn!("ignoring {}: not a manifest this kiln reads ({error})", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_atomically_replaces_the_old_one_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("record.json");
        write_file_atomically(&path, b"old").expect("first write");
        write_file_atomically(&path, b"new").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["record.json"]);
        let error = write_file_atomically(&dir.path().join("missing/record.json"), b"x").expect_err("no folder");
        assert!(format!("{error:#}").contains("missing"), "{error:#}");
    }

    #[test]
    fn commit_moves_files_and_manifest_into_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let mut staged = StagedOutput::new(&out).expect("staging");
        staged.write_json("a.json", &serde_json::json!({"x": 1})).expect("write");
        assert!(!out.join("a.json").exists(), "nothing is visible before the commit");
        let mut manifest = Manifest::new("test", &serde_json::json!({}), &serde_json::json!({}));
        manifest.outputs = staged.hashes().expect("hashes");
        assert_eq!(manifest.outputs[0].path, out.join("a.json").display().to_string());
        staged.commit("manifest.json", &manifest).expect("commit");
        assert!(out.join("a.json").exists() && out.join("manifest.json").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&out).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no staging folder is left: {leftovers:?}");
    }

    #[test]
    fn dropping_without_commit_leaves_old_outputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.json"), "old").expect("write");
        std::fs::create_dir(dir.path().join(".kiln-staging-stale")).expect("stale");
        {
            let mut staged = StagedOutput::new(dir.path()).expect("staging");
            staged.write_json("a.json", &1).expect("write");
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("a.json")).expect("read"), "old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "staging folders are cleared");
    }

    #[test]
    fn a_swap_replaces_a_folder_whole_and_an_interrupted_one_is_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("export");
        let fill = |path: &Path, text: &str| {
            std::fs::create_dir_all(path).expect("mkdir");
            std::fs::write(path.join("weights"), text).expect("write");
        };
        fill(&dir.path().join(".new1"), "one");
        swap_dir_into_place(&dir.path().join(".new1"), &target).expect("first");
        fill(&dir.path().join(".new2"), "two");
        swap_dir_into_place(&dir.path().join(".new2"), &target).expect("second");
        assert_eq!(std::fs::read_to_string(target.join("weights")).expect("read"), "two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["export"], "the old folder and the new one's name are gone");

        // A crash with the old folder set aside and the new one not yet in:
        // the next swap puts the old one back first, and nothing is lost.
        std::fs::rename(&target, aside_path(&target)).expect("aside");
        recover_interrupted_swap(&target).expect("recovered");
        assert_eq!(std::fs::read_to_string(target.join("weights")).expect("read"), "two");
        // A crash after the exchange: the target is whole, the aside copy is old and goes.
        fill(&aside_path(&target), "old");
        fill(&dir.path().join(".new3"), "three");
        swap_dir_into_place(&dir.path().join(".new3"), &target).expect("third");
        assert_eq!(std::fs::read_to_string(target.join("weights")).expect("read"), "three");
        assert!(!aside_path(&target).exists());
    }

    #[test]
    fn sha256_matches_known_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        std::fs::write(&path, "abc").expect("write");
        assert_eq!(
            sha256_file(&path).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
