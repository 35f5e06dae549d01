//! `suite data fetch NAME`: download a dataset's files from their canonical URLs, check each
//! against its published SHA-256 sum, and install them where the loaders look.
//!
//! Downloads go through the system `curl` (and archives are unpacked with the system `tar`), so
//! the suite links no HTTP/TLS stack; a file is written to `NAME.part`, checked, then renamed,
//! so an interrupted or corrupt download never looks installed.

use super::{cifar10, fashion_mnist, fetch_dir, mnist, DatasetName, Download};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What fetching a dataset involves: its files, the directory they go to, and whether the
/// (single) file is a `.tar.gz` to unpack there. `None` for datasets that need no download.
pub fn plan(name: DatasetName) -> Option<(Vec<Download>, PathBuf, bool)> {
    match name {
        DatasetName::FashionMnist => Some((fashion_mnist::SET.downloads(), fetch_dir(fashion_mnist::SET.sub), false)),
        DatasetName::Mnist => Some((mnist::SET.downloads(), fetch_dir(mnist::SET.sub), false)),
        DatasetName::Cifar10 => {
            let archive = Download { url: cifar10::ARCHIVE_URL.into(), sha256: cifar10::ARCHIVE_SHA256 };
            Some((vec![archive], fetch_dir("cifar10"), true))
        }
        DatasetName::Mnist1d | DatasetName::Mnist1dLarge | DatasetName::Digits | DatasetName::MobyDick => None,
    }
}

/// Fetch `name` into its directory (see [`plan`]); returns the directory. `say` gets one line
/// per file.
pub fn fetch(name: DatasetName, say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let Some((downloads, dir, unpack)) = plan(name) else {
        bail!("{name} needs no download: it is shipped with beatmatch or generated");
    };
    fetch_into(&downloads, &dir, unpack, say)?;
    Ok(dir)
}

/// Download every file of `downloads` into `dir` (skipping files already there with the right
/// sum), then unpack the archive if `unpack`.
pub fn fetch_into(downloads: &[Download], dir: &Path, unpack: bool, say: &mut dyn FnMut(&str)) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for d in downloads {
        let dest = dir.join(d.file_name());
        if dest.is_file() && sha256_file(&dest)? == d.sha256 {
            say(&format!("{}: already there, SHA-256 matches", dest.display()));
        } else {
            download(d, &dest)?;
            say(&format!("{}: downloaded, SHA-256 matches", dest.display()));
        }
        if unpack {
            let status = Command::new("tar").arg("-xzf").arg(&dest).arg("-C").arg(dir).status().context("running `tar` (is it installed?)")?;
            if !status.success() {
                bail!("`tar -xzf {}` failed ({status})", dest.display());
            }
            say(&format!("{}: unpacked into {}", dest.display(), dir.display()));
        }
    }
    Ok(())
}

fn download(d: &Download, dest: &Path) -> Result<()> {
    let part = dest.with_extension("part");
    let status = Command::new("curl")
        .args(["--fail", "--location", "--silent", "--show-error", "--retry", "2", "--output"])
        .arg(&part)
        .arg(&d.url)
        .status()
        .context("running `curl` (is it installed?)")?;
    if !status.success() {
        let _ = std::fs::remove_file(&part);
        bail!("downloading {} failed (curl: {status}); is there a network?", d.url);
    }
    let got = sha256_file(&part)?;
    if got != d.sha256 {
        let _ = std::fs::remove_file(&part);
        bail!("{}: SHA-256 {got} does not match the published {}; the file was discarded", d.url, d.sha256);
    }
    std::fs::rename(&part, dest).with_context(|| format!("installing {}", dest.display()))?;
    Ok(())
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_check_the_sum_and_never_install_a_bad_file() {
        if Command::new("curl").arg("--version").output().is_err() {
            panic!("curl is required by `suite data fetch` and this test");
        }
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("payload.bin");
        std::fs::write(&file, b"hello beatmatch").unwrap();
        // A `file://` URL stands in for the network: curl treats both the same way.
        let sum: &'static str = Box::leak(sha256_file(&file).unwrap().into_boxed_str());
        let url = format!("file://{}", file.display());
        let dest = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let good = [Download { url: url.clone(), sha256: sum }];
        fetch_into(&good, dest.path(), false, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(std::fs::read(dest.path().join("payload.bin")).unwrap(), b"hello beatmatch");
        fetch_into(&good, dest.path(), false, &mut |l| lines.push(l.to_string())).unwrap();
        assert!(lines[1].contains("already there"), "{lines:?}");

        let wrong = "0000000000000000000000000000000000000000000000000000000000000000";
        let dest2 = tempfile::tempdir().unwrap();
        let e = fetch_into(&[Download { url, sha256: wrong }], dest2.path(), false, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        assert!(std::fs::read_dir(dest2.path()).unwrap().next().is_none(), "a bad download was left behind");

        let missing = format!("file://{}/nothing-here.bin", src.path().display());
        let e = fetch_into(&[Download { url: missing, sha256: "00" }], dest2.path(), false, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("failed"), "{e}");
    }

    #[test]
    fn every_downloadable_dataset_has_a_plan_with_sums() {
        for d in DatasetName::ALL {
            if let Some((files, dir, _)) = plan(d) {
                assert!(!files.is_empty() && files.iter().all(|f| f.sha256.len() == 64 && f.url.starts_with("http")), "{d}");
                assert!(dir.ends_with(match d {
                    DatasetName::Cifar10 => "cifar10",
                    DatasetName::Mnist => "mnist",
                    _ => "fashion-mnist",
                }));
            } else {
                assert!(d.locate().is_ok(), "{d} has no download and is not built in");
            }
        }
    }
}
