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
//! - A campaign the file does not declare is served from storage if it
//!   was created through the API and never was in the file; one that was
//!   in the file and left it is kept unserved (it still takes redemptions
//!   and shows in reports), whatever changed it live in between.
//!
//! - A campaign an operator retired stays retired, whatever the file says.
//!
//! Offers a revision drops are kept with it as retired offers, so that
//! their values (for redemptions of their pending decisions) and names
//! survive restarts.

use serde::{Deserialize, Serialize};

use crate::config::{CampaignConfig, ConfigError, FileCampaign, OfferConfig, parse_campaign};

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
    /// An operator retired the campaign: it is never served again, whatever
    /// the campaign file says.
    pub retired: bool,
}

impl Revision {
    /// The revision of a campaign found in storage without a stored config.
    pub fn unknown() -> Revision {
        Revision {
            number: 0,
            source: Source::File,
            file_fingerprint: None,
            updated_ms: 0,
            retired: false,
        }
    }
}

/// A revision as stored: the config as TOML, its revision, and the offers
/// earlier revisions had and this one dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCampaign {
    /// [`CampaignConfig::to_toml`].
    pub toml: String,
    /// Its revision.
    pub revision: Revision,
    /// Offers no longer in the config, as they were last configured.
    #[serde(with = "as_json")]
    pub retired: Vec<OfferConfig>,
}

/// Offer configs skip unset fields when serialized, which a format that
/// does not describe itself (the store's) cannot read back: they are
/// stored as JSON text.
mod as_json {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};

    use crate::config::OfferConfig;

    pub(super) fn serialize<S: Serializer>(
        offers: &[OfferConfig],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(offers).map_err(S::Error::custom)?)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<OfferConfig>, D::Error> {
        serde_json::from_str(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl StoredCampaign {
    /// The stored revision of `config`; fails if it has no TOML form.
    pub fn new(
        config: &CampaignConfig,
        revision: Revision,
        retired: Vec<OfferConfig>,
    ) -> Result<Self, ConfigError> {
        Ok(StoredCampaign {
            toml: config.to_toml()?,
            revision,
            retired,
        })
    }

    /// The config, validated as a file would be.
    pub fn config(&self, campaign: &str) -> Result<CampaignConfig, ConfigError> {
        let mut config = parse_campaign(
            &self.toml,
            &format!(
                "stored revision {} of campaign '{campaign}'",
                self.revision.number
            ),
        )?;
        crate::features::settle_stored_buckets(&mut config.features);
        Ok(config)
    }
}

/// The offers of `old` (and those it had retired) that `next` leaves out.
pub(crate) fn dropped_offers(
    old: &CampaignConfig,
    old_retired: &[OfferConfig],
    next: &CampaignConfig,
) -> Vec<OfferConfig> {
    let mut out: Vec<OfferConfig> = Vec::new();
    for o in old.offers.iter().chain(old_retired) {
        if !next.offers.iter().any(|n| n.id == o.id) && !out.iter().any(|x| x.id == o.id) {
            out.push(o.clone());
        }
    }
    out
}

/// What the server runs for one campaign after reconciling.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    /// The config.
    pub config: CampaignConfig,
    /// Its revision.
    pub revision: Revision,
    /// Offers earlier revisions had and this one dropped.
    pub retired: Vec<OfferConfig>,
    /// Whether SelectOffer serves it.
    pub served: bool,
    /// Whether this is a new revision, to be stored.
    pub changed: bool,
    /// What to tell the operator, if anything.
    pub note: Option<String>,
}

/// Reconciles the campaign file with the stored revisions (see the module
/// documentation); `now_ms` dates new revisions.
pub(crate) fn resolve(
    file: Vec<FileCampaign>,
    mut stored: Vec<(String, StoredCampaign)>,
    now_ms: i64,
) -> Result<Vec<Resolved>, ConfigError> {
    let mut out = Vec::new();
    for FileCampaign {
        mut config,
        fingerprint,
    } in file
    {
        let previous = match stored.iter().position(|(id, _)| *id == config.id) {
            Some(i) => {
                let s = stored.swap_remove(i).1;
                let old = s.config(&config.id)?;
                Some((s, old))
            }
            None => None,
        };
        crate::features::settle_buckets(
            &mut config.features,
            previous.as_ref().map(|(_, old)| old.features.as_slice()),
        );
        let revision = |number: u64| Revision {
            number,
            source: Source::File,
            file_fingerprint: Some(fingerprint.clone()),
            updated_ms: now_ms,
            retired: false,
        };
        let resolved = match previous {
            Some((s, old)) if s.revision.retired => Resolved {
                config: old,
                revision: s.revision,
                retired: s.retired,
                served: false,
                changed: false,
                note: Some(
                    "the campaign file declares a campaign an operator retired; retirement is final, so it is not served"
                        .into(),
                ),
            },
            None => Resolved {
                revision: revision(1),
                config,
                retired: Vec::new(),
                served: true,
                changed: true,
                note: None,
            },
            Some((s, old))
                if s.revision.file_fingerprint.as_deref() == Some(fingerprint.as_str()) =>
            {
                Resolved {
                    config: old,
                    revision: s.revision,
                    retired: s.retired,
                    served: true,
                    changed: false,
                    note: None,
                }
            }
            Some((s, old)) => {
                if let Some(why) = old.update_conflict(&s.retired, &config) {
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
                Resolved {
                    revision: revision(s.revision.number + 1),
                    retired: dropped_offers(&old, &s.retired, &config),
                    config,
                    served: true,
                    changed: true,
                    note,
                }
            }
        };
        out.push(resolved);
    }
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, s) in stored {
        out.push(Resolved {
            config: s.config(&id)?,
            // Served only if it never was in the file: one that left the
            // file was taken out of service there.
            served: s.revision.file_fingerprint.is_none() && !s.revision.retired,
            revision: s.revision,
            retired: s.retired,
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

    fn file(config: &CampaignConfig, fingerprint: &str) -> FileCampaign {
        FileCampaign {
            config: config.clone(),
            fingerprint: fingerprint.into(),
        }
    }

    fn stored(
        config: &CampaignConfig,
        number: u64,
        source: Source,
        file_fingerprint: Option<&str>,
    ) -> StoredCampaign {
        StoredCampaign::new(
            config,
            Revision {
                number,
                source,
                file_fingerprint: file_fingerprint.map(str::to_owned),
                updated_ms: 5,
                retired: false,
            },
            Vec::new(),
        )
        .expect("toml")
    }

    fn buckets(config: &CampaignConfig) -> Vec<Option<crate::features::Buckets>> {
        config
            .features
            .iter()
            .filter_map(|f| match f {
                crate::features::FeatureSpec::Numeric { buckets, .. } => Some(*buckets),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn numbers_keep_the_bucket_encoding_they_were_stored_with() {
        use crate::features::Buckets;
        let personal = crate::config::demo().expect("demo").remove(1);
        assert_eq!(
            buckets(&personal),
            [None, None],
            "the demo file leaves it unset"
        );
        // A new campaign is stored with steps, written out.
        let r = resolve(vec![file(&personal, "f1")], vec![], 7).expect("resolve");
        assert_eq!(buckets(&r[0].config), [Some(Buckets::Steps); 2]);
        let toml = StoredCampaign::new(&r[0].config, r[0].revision.clone(), Vec::new())
            .expect("toml")
            .toml;
        assert_eq!(toml.matches("buckets = \"steps\"").count(), 2, "{toml}");
        // Stored before the choice existed (no `buckets` in its TOML): its
        // posteriors are one-hot, and an edited file keeps that.
        let legacy = stored(&personal, 2, Source::File, Some("f1"));
        assert!(!legacy.toml.contains("buckets"));
        let same = resolve(
            vec![file(&personal, "f1")],
            vec![(personal.id.clone(), legacy.clone())],
            7,
        )
        .expect("unchanged file");
        assert_eq!(buckets(&same[0].config), [Some(Buckets::OneHot); 2]);
        let mut edited = personal.clone();
        edited.control_share = 0.2;
        let r = resolve(
            vec![file(&edited, "f2")],
            vec![(personal.id.clone(), legacy.clone())],
            7,
        )
        .expect("an edit that leaves the features alone is no conflict");
        assert!(r[0].changed);
        assert_eq!(buckets(&r[0].config), [Some(Buckets::OneHot); 2]);
        // Asking for steps explicitly would change what they learned.
        let mut steps = personal.clone();
        crate::features::settle_buckets(&mut steps.features, None);
        let e = resolve(
            vec![file(&steps, "f3")],
            vec![(personal.id.clone(), legacy)],
            7,
        );
        assert!(e.is_err());
    }

    #[test]
    fn a_new_campaign_starts_from_the_file() {
        let r = resolve(vec![file(&demo(), "f1")], vec![], 7).expect("resolve");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].config, demo());
        assert_eq!(r[0].revision.number, 1);
        assert_eq!(r[0].revision.source, Source::File);
        assert_eq!(r[0].revision.file_fingerprint.as_deref(), Some("f1"));
        assert!(r[0].served && r[0].changed);
    }

    #[test]
    fn live_changes_survive_an_unchanged_file() {
        let mut live = demo();
        live.control_share = 0.4;
        let s = vec![(live.id.clone(), stored(&live, 3, Source::Api, Some("f1")))];
        let r = resolve(vec![file(&demo(), "f1")], s, 7).expect("resolve");
        assert_eq!(r[0].config, live);
        assert_eq!(r[0].revision.number, 3);
        assert!(!r[0].changed);
    }

    #[test]
    fn an_edited_file_wins_over_live_changes() {
        let mut live = demo();
        live.control_share = 0.4;
        let mut edited = demo();
        let gone = edited.offers.pop().expect("an offer");
        let s = vec![(live.id.clone(), stored(&live, 3, Source::Api, Some("f1")))];
        let r = resolve(vec![file(&edited, "f2")], s, 7).expect("resolve");
        assert_eq!(r[0].config, edited);
        assert_eq!(r[0].revision.number, 4);
        assert_eq!(r[0].revision.source, Source::File);
        assert_eq!(r[0].retired, [gone], "the dropped offer is kept as retired");
        assert!(r[0].changed);
        assert!(r[0].note.as_deref().unwrap_or("").contains("revision 3"));
    }

    #[test]
    fn the_file_cannot_change_what_a_campaign_learned() {
        let s = vec![(
            "coffee".to_owned(),
            stored(&demo(), 2, Source::Api, Some("old")),
        )];
        let mut edited = demo();
        edited.segment_by = vec!["region".into()];
        let e = resolve(vec![file(&edited, "new")], s, 7).expect_err("conflict");
        assert!(e.to_string().contains("segment_by"), "{e}");
    }

    #[test]
    fn campaigns_missing_from_the_file_are_served_only_if_made_live() {
        let with_id = |id: &str| {
            let mut c = demo();
            c.id = id.into();
            c
        };
        let s = vec![
            (
                "live".to_owned(),
                stored(&with_id("live"), 1, Source::Api, None),
            ),
            (
                "gone".to_owned(),
                stored(&with_id("gone"), 1, Source::File, Some("f9")),
            ),
            // From the file, changed through the API, then removed from the
            // file: the removal is the latest intent.
            (
                "edited".to_owned(),
                stored(&with_id("edited"), 2, Source::Api, Some("f8")),
            ),
        ];
        let r = resolve(vec![file(&demo(), "f1")], s, 7).expect("resolve");
        let served: Vec<(&str, bool)> =
            r.iter().map(|x| (x.config.id.as_str(), x.served)).collect();
        assert_eq!(
            served,
            [
                ("coffee", true),
                ("edited", false),
                ("gone", false),
                ("live", true)
            ]
        );
    }

    #[test]
    fn stored_revisions_read_back() {
        let mut retired = demo().offers;
        retired[0].max_decisions = Some(3);
        let s = StoredCampaign::new(&demo(), Revision::unknown(), retired).expect("toml");
        let bytes = postcard::to_stdvec(&s).expect("encode");
        let back: StoredCampaign = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, s);
    }

    #[test]
    fn a_retired_campaign_stays_retired() {
        let mut s = stored(&demo(), 2, Source::Api, Some("f1"));
        s.revision.retired = true;
        for fp in ["f1", "edited"] {
            let r = resolve(
                vec![file(&demo(), fp)],
                vec![("coffee".into(), s.clone())],
                7,
            )
            .expect("resolve");
            assert!(!r[0].served && !r[0].changed, "{fp}");
            assert!(r[0].revision.retired);
        }
        let mut live = s.clone();
        live.revision.file_fingerprint = None;
        let r = resolve(vec![], vec![("coffee".into(), live)], 7).expect("resolve");
        assert!(!r[0].served);
    }

    #[test]
    fn dropped_offers_accumulate() {
        let old = demo();
        let mut next = demo();
        let b = next.offers.remove(1);
        let a = next.offers.remove(0);
        let earlier = crate::config::OfferConfig {
            id: "older".into(),
            ..a.clone()
        };
        let dropped = dropped_offers(&old, std::slice::from_ref(&earlier), &next);
        assert_eq!(dropped, [a.clone(), b, earlier]);
        next.offers.push(a);
        assert_eq!(
            dropped_offers(&old, &[], &next).len(),
            1,
            "re-added offers are not retired"
        );
    }
}
