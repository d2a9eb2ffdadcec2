//! The rule packs shipped in `rules/`, compiled into the binary so that an
//! installed airlock (`cargo install`, a container without mounted rules)
//! runs on them when there is no `./rules` directory. This module owns that
//! embedded copy, the choice between it and a directory, and writing it out
//! for editing (`airlock rules init`). It must never be preferred over a
//! rules directory that exists, nor over one the configuration names: a
//! mount that failed must stop airlock, not swap its rules.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Location, Rule, RuleError};

/// The rules directory when the configuration names none.
pub const DEFAULT_DIR: &str = "./rules";

/// Each shipped pack: its path in the repository (which is also where its
/// errors and rule locations point) and its text. `rules_init` writes them
/// under their file names; a test checks the list against `rules/`.
pub const PACKS: &[(&str, &str)] = &[
    (
        "rules/00-defaults.toml",
        include_str!("../../rules/00-defaults.toml"),
    ),
    (
        "rules/10-models.toml",
        include_str!("../../rules/10-models.toml"),
    ),
    (
        "rules/20-email.toml",
        include_str!("../../rules/20-email.toml"),
    ),
    (
        "rules/30-messaging.toml",
        include_str!("../../rules/30-messaging.toml"),
    ),
    ("rules/40-crm.toml", include_str!("../../rules/40-crm.toml")),
    (
        "rules/50-payments.toml",
        include_str!("../../rules/50-payments.toml"),
    ),
    (
        "rules/60-documents.toml",
        include_str!("../../rules/60-documents.toml"),
    ),
    ("rules/70-mcp.toml", include_str!("../../rules/70-mcp.toml")),
];

/// Where a set of rules was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The `*.toml` files of this directory.
    Dir(PathBuf),
    /// The packs compiled into airlock, for want of a `./rules` directory.
    Shipped,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Dir(dir) => write!(f, "{}", dir.display()),
            Origin::Shipped => write!(
                f,
                "the shipped packs built into airlock (there is no {DEFAULT_DIR} directory; \
                 `airlock rules init` writes them out for editing)"
            ),
        }
    }
}

/// Where the rules for `dir` come from: the directory, unless it is the
/// default `./rules` and nothing by that name exists, in which case the
/// shipped packs.
pub fn origin(dir: &Path) -> Origin {
    let absent = matches!(
        std::fs::symlink_metadata(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    );
    if absent && dir == Path::new(DEFAULT_DIR) {
        Origin::Shipped
    } else {
        Origin::Dir(dir.to_owned())
    }
}

/// Loads the rules of `dir`, or the shipped packs as [`origin`] decides.
pub fn load(dir: &Path) -> Result<(Vec<Rule>, Origin), Vec<RuleError>> {
    let origin = origin(dir);
    let rules = match &origin {
        Origin::Dir(dir) => super::load_dir(dir)?,
        Origin::Shipped => super::load::load_texts(PACKS.iter().copied())?,
    };
    Ok((rules, origin))
}

/// What `airlock rules init` did with each pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    /// False when a file was there already and was left as it is.
    pub created: bool,
}

/// Writes the shipped packs into `dir` (created if missing), never
/// overwriting a file that exists: a pack already there is reported as
/// left alone, and the others are still written.
pub fn init(dir: &Path) -> Result<Vec<Written>, RuleError> {
    let failed = |path: &Path, e: std::io::Error| RuleError {
        location: Location {
            file: path.display().to_string(),
            line: 0,
            column: 0,
        },
        message: format!("cannot write the rule pack: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let mut written = Vec::new();
    for (repo_path, text) in PACKS {
        let name = repo_path.rsplit('/').next().unwrap_or(repo_path);
        let path = dir.join(name);
        // `create_new` refuses atomically, so a file made meanwhile is kept.
        match std::fs::File::create_new(&path) {
            Ok(mut file) => {
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| failed(&path, e))?;
                written.push(Written {
                    path,
                    created: true,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => written.push(Written {
                path,
                created: false,
            }),
            Err(e) => return Err(failed(&path, e)),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack added to `rules/` but not to [`PACKS`] would be missing from
    /// every installed airlock.
    #[test]
    fn the_embedded_packs_are_exactly_the_files_in_rules() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(repo.join("rules"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (
                    format!("rules/{name}"),
                    std::fs::read_to_string(&path).unwrap(),
                )
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = PACKS
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect();
        let names = |packs: &[(String, String)]| -> Vec<String> {
            packs.iter().map(|(path, _)| path.clone()).collect()
        };
        assert_eq!(
            names(&embedded),
            names(&on_disk),
            "PACKS must list rules/*.toml, in order"
        );
        assert!(
            embedded == on_disk,
            "an embedded pack differs from its file"
        );
    }

    #[test]
    fn a_named_directory_is_never_replaced_by_the_shipped_packs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("rules");
        assert_eq!(origin(&missing), Origin::Dir(missing.clone()));
        let errors = load(&missing).unwrap_err();
        assert!(
            errors[0]
                .message
                .contains("cannot read the rules directory")
        );
    }

    #[test]
    fn the_embedded_packs_load_located_as_in_the_repository() {
        let rules = super::super::load::load_texts(PACKS.iter().copied()).unwrap();
        assert!(!rules.is_empty());
        for rule in &rules {
            assert!(
                rule.location.file.starts_with("rules/") && rule.location.line > 0,
                "{}",
                rule.location
            );
        }
    }

    #[test]
    fn init_writes_every_pack_and_overwrites_none() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("rules");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("20-email.toml"), "# mine\n").unwrap();
        let written = init(&target).unwrap();
        assert_eq!(written.len(), PACKS.len());
        let kept: Vec<&Written> = written.iter().filter(|w| !w.created).collect();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].path.ends_with("20-email.toml"));
        assert_eq!(
            std::fs::read_to_string(target.join("20-email.toml")).unwrap(),
            "# mine\n"
        );
        assert_eq!(
            std::fs::read_to_string(target.join("40-crm.toml")).unwrap(),
            PACKS[4].1
        );
    }
}
