//! Reloading the rules while airlock runs: on SIGHUP, when the rules
//! directory changes (polled, and applied once it has been still for one
//! poll), and on `POST /api/rules/reload`. A reload is atomic: the whole new
//! set is loaded and checked first, and a bad set is refused with its errors
//! logged while the old set stays in force. Holds keep the windows they were
//! created with.
//!
//! Nothing here matches requests; it only swaps which rule set does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::rules::{Action, RuleError, RuleSet};

/// The rule set in force, swapped whole on reload.
pub type SharedRules = Arc<ArcSwap<RuleSet>>;

/// How often the rules directory is looked at.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Reloader {
    dir: PathBuf,
    unmatched: Action,
    rules: SharedRules,
}

impl Reloader {
    pub fn new(dir: PathBuf, unmatched: Action, rules: SharedRules) -> Reloader {
        Reloader {
            dir,
            unmatched,
            rules,
        }
    }

    pub fn rules(&self) -> &SharedRules {
        &self.rules
    }

    /// Loads the directory again (the shipped packs while there is no
    /// `./rules`); on success the new set is in force for every request
    /// that starts after this returns.
    pub fn reload(&self, why: &str) -> Result<usize, Vec<RuleError>> {
        let loaded = crate::rules::shipped::load(&self.dir)
            .and_then(|(rules, _)| RuleSet::new(rules, self.unmatched));
        match loaded {
            Ok(set) => {
                let n = set.rules().len();
                self.rules.store(Arc::new(set));
                tracing::info!(rules = n, trigger = why, "rules reloaded");
                Ok(n)
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(
                        trigger = why,
                        "rules reload refused, the previous rules stay in force: {e}"
                    );
                }
                Err(errors)
            }
        }
    }

    /// What the directory looks like: names, sizes, modification times.
    fn snapshot(&self) -> Vec<(String, u64, Option<SystemTime>)> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let meta = e.metadata().ok()?;
                        Some((name, meta.len(), meta.modified().ok()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Polls the directory until `stop`; a change is applied once the
    /// directory has stayed the same for one poll, so an editor's several
    /// writes make one reload. The directory is read as it is now, before
    /// the returned future first runs, so no edit made after this call is
    /// missed.
    pub fn watch(self, stop: watch::Receiver<bool>) -> impl Future<Output = ()> + Send {
        let applied = self.snapshot();
        self.poll(applied, stop)
    }

    async fn poll(
        self,
        mut applied: Vec<(String, u64, Option<SystemTime>)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut pending: Option<Vec<(String, u64, Option<SystemTime>)>> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
            let now = self.snapshot();
            if now == applied {
                pending = None;
                continue;
            }
            if pending.as_ref() == Some(&now) {
                let _ = self.reload("rules directory changed");
                applied = now;
                pending = None;
            } else {
                pending = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_change_is_applied_once_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("10.toml");
        std::fs::write(&file, "[[rule]]\nname = \"a\"\naction = \"deny\"\n").unwrap();
        let set =
            RuleSet::new(crate::rules::load_dir(dir.path()).unwrap(), Action::Review).unwrap();
        let rules: SharedRules = Arc::new(ArcSwap::from_pointee(set));
        let reloader = Reloader::new(dir.path().to_owned(), Action::Review, rules.clone());
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(reloader.watch(stop));
        std::fs::write(
            &file,
            "[[rule]]\nname = \"a\"\naction = \"deny\"\n[[rule]]\nname = \"b\"\naction = \"deny\"\n",
        )
        .unwrap();
        for _ in 0..100 {
            if rules.load().rules().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(rules.load().rules().len(), 2);
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }
}
