//! Campaign configs that change while the server runs. Every change is a
//! new revision, stored with the campaign; at startup the campaign file and
//! the stored revisions are reconciled by one rule: the most recent intent
//! wins.
//!
//! - A campaign the file declares and storage does not know starts at
//!   revision 1, from the file.
//! - If the file's version is the one the server read last time (same
//!   fingerprint), the stored revision wins: live changes survive restarts.
//! - If the file's version changed since, the file wins: an operator edited
//!   it after the live changes, and it becomes a new revision.
//! - A campaign the file does not declare is served from storage if its
//!   last revision came from the API, and is kept unserved (it still takes
//!   redemptions and shows in reports) if it came from the file.

use serde::{Deserialize, Serialize};

use crate::config::{CampaignConfig, ConfigError, parse_campaign};

/// Where a revision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The campaign file (or the built-in demo).
    File,
    /// A `PutCampaign` or `AddOffer` call.
    Api,
}

impl Source {
    /// "file" or "api".
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Api => "api",
        }
    }
}

/// Which revision of its config a campaign runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 1 for the first config, one more for every change; 0 for a campaign
    /// found in storage with no stored config (written before revisions).
    pub number: u64,
    /// Where it came from.
    pub source: Source,
    /// Fingerprint of the campaign file's version the server last read,
    /// kept through API changes (see the module documentation).
    pub file_fingerprint: Option<String>,
    /// When it was made, unix ms.
    pub updated_ms: i64,
}

impl Revision {
    /// The revision of a campaign found in storage without a stored config.
    pub fn unknown() -> Revision {
        Revision {
            number: 0,
            source: Source::File,
            file_fingerprint: None,
            updated_ms: 0,
        }
    }
}

/// A revision as stored: the config as TOML, and its revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCampaign {
    /// [`CampaignConfig::to_toml`].
    pub toml: String,
    /// Its revision.
    pub revision: Revision,
}

impl StoredCampaign {
    /// The stored revision of `config`.
    pub fn new(config: &CampaignConfig, revision: Revision) -> Self {
        StoredCampaign {
            toml: config.to_toml(),
            revision,
        }
    }

    /// The config, validated as a file would be.
    pub fn config(&self) -> Result<CampaignConfig, ConfigError> {
        parse_campaign(&self.toml, "stored revision")
    }
}

/// What the server runs for one campaign after reconciling.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The config.
    pub config: CampaignConfig,
    /// Its revision.
    pub revision: Revision,
    /// Whether SelectOffer serves it.
    pub served: bool,
    /// Whether this is a new revision, to be stored.
    pub changed: bool,
    /// What to tell the operator, if anything.
    pub note: Option<String>,
}

/// Reconciles the campaign file with the stored revisions (see the module
/// documentation); `now_ms` dates new revisions.
pub fn resolve(
    file: Vec<CampaignConfig>,
    mut stored: Vec<(String, StoredCampaign)>,
    now_ms: i64,
) -> Result<Vec<Resolved>, ConfigError> {
    let mut out = Vec::new();
    for config in file {
        let fingerprint = config.fingerprint();
        let previous = stored
            .iter()
            .position(|(id, _)| *id == config.id)
            .map(|i| stored.swap_remove(i).1);
        let from_file = |number: u64, note: Option<String>| Resolved {
            revision: Revision {
                number,
                source: Source::File,
                file_fingerprint: Some(fingerprint.clone()),
                updated_ms: now_ms,
            },
            config: config.clone(),
            served: true,
            changed: true,
            note,
        };
        let resolved = match previous {
            None => from_file(1, None),
            Some(s) if s.revision.file_fingerprint.as_deref() == Some(fingerprint.as_str()) => {
                Resolved {
                    config: s.config()?,
                    revision: s.revision,
                    served: true,
                    changed: false,
                    note: None,
                }
            }
            Some(s) => {
                let old = s.config()?;
                if let Some(why) = old.update_conflict(&config) {
                    return Err(ConfigError::Invalid {
                        origin: "campaign file".into(),
                        message: format!("campaign '{}': {why}", config.id),
                    });
                }
                let note = (s.revision.source == Source::Api).then(|| {
                    format!(
                        "the campaign file changed since the server last read it: its version \
                         replaces revision {} (made through the API)",
                        s.revision.number
                    )
                });
                from_file(s.revision.number + 1, note)
            }
        };
        out.push(resolved);
    }
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, s) in stored {
        out.push(Resolved {
            config: s.config()?,
            served: s.revision.source == Source::Api,
            revision: s.revision,
            changed: false,
            note: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> CampaignConfig {
        crate::config::demo().expect("demo").remove(0)
    }

    fn api(
        config: &CampaignConfig,
        number: u64,
        file_fingerprint: Option<String>,
    ) -> StoredCampaign {
        StoredCampaign::new(
            config,
            Revision {
                number,
                source: Source::Api,
                file_fingerprint,
                updated_ms: 5,
            },
        )
    }

    #[test]
    fn a_new_campaign_starts_from_the_file() {
        let r = resolve(vec![demo()], vec![], 7).expect("resolve");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].config, demo());
        assert_eq!(r[0].revision.number, 1);
        assert_eq!(r[0].revision.source, Source::File);
        assert_eq!(r[0].revision.file_fingerprint, Some(demo().fingerprint()));
        assert!(r[0].served && r[0].changed);
    }

    #[test]
    fn live_changes_survive_an_unchanged_file() {
        let mut live = demo();
        live.control_share = 0.4;
        let stored = vec![(live.id.clone(), api(&live, 3, Some(demo().fingerprint())))];
        let r = resolve(vec![demo()], stored, 7).expect("resolve");
        assert_eq!(r[0].config, live);
        assert_eq!(r[0].revision.number, 3);
        assert!(!r[0].changed);
    }

    #[test]
    fn an_edited_file_wins_over_live_changes() {
        let mut live = demo();
        live.control_share = 0.4;
        let mut edited = demo();
        edited.offers.pop();
        let stored = vec![(live.id.clone(), api(&live, 3, Some(demo().fingerprint())))];
        let r = resolve(vec![edited.clone()], stored, 7).expect("resolve");
        assert_eq!(r[0].config, edited);
        assert_eq!(r[0].revision.number, 4);
        assert_eq!(r[0].revision.source, Source::File);
        assert!(r[0].changed);
        assert!(r[0].note.as_deref().unwrap_or("").contains("revision 3"));
    }

    #[test]
    fn the_file_cannot_change_what_a_campaign_learned() {
        let stored = vec![("coffee".to_owned(), api(&demo(), 2, Some("old".into())))];
        let mut edited = demo();
        edited.segment_by = vec!["region".into()];
        let e = resolve(vec![edited], stored, 7).expect_err("conflict");
        assert!(e.to_string().contains("segment_by"), "{e}");
    }

    #[test]
    fn campaigns_missing_from_the_file_are_served_if_made_live() {
        let mut made_live = demo();
        made_live.id = "live".into();
        let mut from_file = demo();
        from_file.id = "gone".into();
        let stored = vec![
            ("live".to_owned(), api(&made_live, 1, None)),
            (
                "gone".to_owned(),
                StoredCampaign::new(
                    &from_file,
                    Revision {
                        number: 1,
                        source: Source::File,
                        file_fingerprint: Some(from_file.fingerprint()),
                        updated_ms: 1,
                    },
                ),
            ),
        ];
        let r = resolve(vec![demo()], stored, 7).expect("resolve");
        let served: Vec<(&str, bool)> =
            r.iter().map(|x| (x.config.id.as_str(), x.served)).collect();
        assert_eq!(served, [("coffee", true), ("gone", false), ("live", true)]);
    }
}
