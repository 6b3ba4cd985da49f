//! Config revisions and backups, each between two write groups.

use super::*;

impl Writer {
    /// Makes the next revision of a campaign's config durable, then serves
    /// it: from the next SelectOffer on, decisions use it.
    pub(super) fn revise(
        &mut self,
        campaign: &str,
        change: ConfigChange,
        expected_revision: Option<u64>,
    ) -> Result<Arc<Campaign>, Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(
                "storage failed earlier; restart the server (see its log)".into(),
            ));
        }
        let current = self.campaign(campaign);
        let at = current.as_ref().map_or(0, |c| c.revision.number);
        if let Some(expected) = expected_revision
            && expected != at
        {
            return Err(if current.is_none() {
                Error::Aborted(format!(
                    "campaign '{campaign}' does not exist (expected revision {expected})"
                ))
            } else if expected == 0 {
                Error::AlreadyExists(format!(
                    "campaign '{campaign}' exists already (at revision {at}); expected_revision 0 only creates"
                ))
            } else {
                Error::Aborted(format!(
                    "campaign '{campaign}' is at revision {at}, not {expected}: it changed since you read it; read it again and retry"
                ))
            });
        }
        if let Some(c) = &current
            && c.revision.retired
        {
            if matches!(change, ConfigChange::Retire) {
                return Ok(c.clone());
            }
            return Err(retired_error(campaign));
        }
        let retiring = matches!(change, ConfigChange::Retire);
        let config = match (change, &current) {
            (ConfigChange::Put(config), current) => {
                let mut config = *config;
                // Numbers keep the bucket encoding they were learned under.
                crate::features::settle_buckets(
                    &mut config.features,
                    current.as_ref().map(|c| c.config.features.as_slice()),
                );
                config
            }
            (ConfigChange::Retire, Some(c)) => c.config.clone(),
            (ConfigChange::Retire, None) => {
                return Err(Error::refused(
                    crate::error::Reason::UnknownCampaign,
                    format!("unknown campaign '{campaign}'"),
                ));
            }
            (ConfigChange::AddOffer(offer), Some(c)) => {
                if !c.active {
                    return Err(Error::FailedPrecondition(format!(
                        "campaign '{campaign}' is not served (it left the campaign file); PutCampaign its config to serve it again"
                    )));
                }
                if c.config.offers.iter().any(|o| o.id == offer.id) {
                    return Err(Error::AlreadyExists(format!(
                        "campaign '{campaign}' already has an offer '{}'",
                        offer.id
                    )));
                }
                let mut config = c.config.clone();
                config.offers.push(*offer);
                crate::config::validate(config, "the new offer")
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?
            }
            (ConfigChange::AddOffer(_), None) => {
                return Err(Error::refused(
                    crate::error::Reason::UnknownCampaign,
                    format!("unknown campaign '{campaign}'"),
                ));
            }
        };
        if config.id != campaign {
            return Err(Error::InvalidArgument(format!(
                "the config is for campaign '{}', not '{campaign}'",
                config.id
            )));
        }
        if !retiring && config.offers.len() > self.options.max_offers {
            return Err(Error::InvalidArgument(format!(
                "campaign '{campaign}' would have {} offers; the server allows at most {} (--max-offers)",
                config.offers.len(),
                self.options.max_offers
            )));
        }
        if let Some(c) = &current {
            if c.revision.number == 0 {
                return Err(Error::FailedPrecondition(if retiring {
                    format!(
                        "campaign '{campaign}' has history from before stored configs and is not served; it stays unserved unless the campaign file declares it"
                    )
                } else {
                    format!(
                        "campaign '{campaign}' has history from before stored configs; declare it in the campaign file (or use a new id)"
                    )
                }));
            }
            if let Some(why) = c.config.update_conflict(&c.retired, &config) {
                return Err(Error::FailedPrecondition(format!(
                    "campaign '{campaign}': {why}"
                )));
            }
            // Back into the config after an operator retired it: it would
            // never be chosen.
            if let Some(o) = config.offers.iter().find(|o| {
                c.offer_status(&o.id) == OfferStatus::Retired
                    && !c.config.offers.iter().any(|x| x.id == o.id)
            }) {
                return Err(Error::FailedPrecondition(format!(
                    "offer '{}' was retired by an operator and retirement is final; use a new offer id",
                    o.id
                )));
            }
            if c.config == config && c.active && !retiring {
                return Ok(c.clone()); // nothing changes
            }
        }
        let revision = Revision {
            number: at + 1,
            source: Source::Api,
            // Kept while the campaign is served: an unchanged file then
            // leaves live changes alone. A campaign that left the file and
            // is served again through the API belongs to the API now.
            file_fingerprint: current
                .as_ref()
                .filter(|c| c.active)
                .and_then(|c| c.revision.file_fingerprint.clone()),
            updated_ms: self.clock.now_ms(),
            retired: retiring,
        };
        let retired = match &current {
            Some(c) => crate::revisions::dropped_offers(&c.config, &c.retired, &config),
            None => Vec::new(),
        };
        let stored = StoredCampaign::new(&config, revision.clone(), retired)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut writes = WriteSet::default();
        writes.put_config(campaign, &stored);
        self.store.commit(writes)?;
        if let Err(e) = self.store.flush() {
            // As in `finish`: memory no longer knows what is on disk.
            self.failed.store(true, Ordering::Relaxed);
            tracing::error!(error = %e, "storage write failed");
            return Err(Error::Unavailable(format!(
                "storage write failed, the change may not be recorded: {e}"
            )));
        }
        // Only now does the shared state grow (new offers' priors), so a
        // failed write leaves it as it was.
        let next = Arc::new(match &current {
            Some(c) => c.revised(config, revision),
            None => Campaign::new(config, revision, true),
        });
        // A revision may re-base posteriors (the learned prior switched off)
        // or reset the untrained ones (a new prior): store them all, with
        // the prior, at the learning event the forced checkpoint reached.
        if let Some(ctx) = &next.contextual {
            let mut writes = WriteSet::default();
            for (o, m) in next.offers.iter().zip(ctx.models.load().iter()) {
                writes.put_model(campaign, &o.id, m);
            }
            writes.put_prior(campaign, &ctx.prior.read());
            // The model sequence stays: the forced checkpoint before this
            // left nothing dirty, so it already says `self.seq`.
            let stored = self
                .store
                .commit(writes)
                .and_then(|()| self.watched_flush());
            if let Err(e) = stored {
                self.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "storage write failed");
                return Err(Error::Unavailable(format!(
                    "storage write failed after the change was recorded: {e}"
                )));
            }
        }
        self.campaigns
            .write()
            .insert(campaign.to_owned(), next.clone());
        metrics::counter!("offer_bandit_config_revisions_total").increment(1);
        Ok(next)
    }

    pub(super) fn backup(&mut self, path: &std::path::Path) -> Result<u64, Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(
                "storage failed earlier; restart the server (see its log)".into(),
            ));
        }
        let file = std::fs::File::create(path).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create the backup file {}: {e}",
                path.display()
            ))
        })?;
        let mut out = std::io::BufWriter::new(file);
        let n = self.store.write_snapshot(&mut out)?;
        out.into_inner()
            .map_err(|e| Error::Unavailable(format!("writing the backup: {e}")))?
            .sync_all()
            .map_err(|e| Error::Unavailable(format!("writing the backup: {e}")))?;
        Ok(n)
    }
}
