//! Records what this binary was built from, for `sqlctl version`, `/metrics`'
//! `sqlctl_build_info` and the lease record a running controller writes: the commit (read from
//! `.git` without running git; `SQLCTL_BUILD_COMMIT` overrides it, e.g. in a Docker build
//! that has no `.git`), the cargo profile (taken from the output directory, so custom profiles
//! such as `quick` are named as such) and the target triple.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=SQLCTL_BUILD_COMMIT");
    let commit = match std::env::var("SQLCTL_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=SQLCTL_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=SQLCTL_BUILD_PROFILE={}", profile());
    println!("cargo:rustc-env=SQLCTL_BUILD_TARGET={}", std::env::var("TARGET").unwrap_or_default());
}

/// `target/<profile>/build/sqlctl-…/out`: the directory two levels above `build/` is named after
/// the profile (`debug` for dev and test, `release`, `quick`, `bench`…).
fn profile() -> String {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    out.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| std::env::var("PROFILE").unwrap_or_default())
}

/// The commit HEAD names, read from the git directory (a worktree's `.git` file points at it).
fn git_commit() -> Option<String> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?);
    let dot_git = root.join(".git");
    let git_dir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
        if dir.is_absolute() { dir } else { root.join(dir) }
    } else {
        dot_git
    };
    let head_path = git_dir.join("HEAD");
    println!("cargo:rerun-if-changed={}", head_path.display());
    let head = std::fs::read_to_string(&head_path).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:") else {
        return Some(short(head));
    };
    let reference = reference.trim();
    // Branch refs live in the common directory of a worktree.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|c| {
            let c = PathBuf::from(c.trim());
            if c.is_absolute() { c } else { git_dir.join(c) }
        })
        .unwrap_or_else(|_| git_dir.clone());
    for dir in [&git_dir, &common] {
        let path = dir.join(reference);
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
            return std::fs::read_to_string(path).ok().map(|s| short(s.trim()));
        }
    }
    let packed = common.join("packed-refs");
    println!("cargo:rerun-if-changed={}", packed.display());
    let text = std::fs::read_to_string(packed).ok()?;
    text.lines().find_map(|l| {
        let (hash, name) = l.split_once(' ')?;
        (name == reference).then(|| short(hash))
    })
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
