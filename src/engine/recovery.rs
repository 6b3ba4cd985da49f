//! Startup: campaigns from the file and the store, posteriors from their
//! checkpoints plus the learning events since, and the writer started.

use super::*;

impl Engine {
    /// Builds the engine from configured campaigns and the store's contents,
    /// and starts the writer thread, on the system clock and each thread's
    /// generator. Fails on unreadable stored records.
    pub fn open(
        store: Arc<dyn Storage>,
        configs: Vec<FileCampaign>,
        options: EngineOptions,
        customer_key: CustomerKey,
        id_keys: IdKeys,
    ) -> Result<Engine, StoreError> {
        Engine::open_with(
            store,
            configs,
            options,
            customer_key,
            id_keys,
            Sources::default(),
        )
    }

    /// [`Engine::open`] with time and randomness from `sources`.
    pub fn open_with(
        store: Arc<dyn Storage>,
        configs: Vec<FileCampaign>,
        options: EngineOptions,
        customer_key: CustomerKey,
        id_keys: IdKeys,
        sources: Sources,
    ) -> Result<Engine, StoreError> {
        let niceness = options.writer_niceness;
        let (engine, writer, inbox) =
            Engine::assemble(store, configs, options, customer_key, id_keys, sources)?;
        std::thread::Builder::new()
            .name("offer-bandit-writer".into())
            .spawn(move || {
                crate::process::lower_this_threads_priority(niceness);
                writer.run(inbox)
            })
            .map_err(StoreError::backend)?;
        Ok(engine)
    }

    /// The engine and its writer, not started: the writer runs on the
    /// receiver (in a thread of its own, or step by step in tests).
    pub(super) fn assemble(
        store: Arc<dyn Storage>,
        configs: Vec<FileCampaign>,
        options: EngineOptions,
        customer_key: CustomerKey,
        id_keys: IdKeys,
        sources: Sources,
    ) -> Result<(Engine, Writer, WriterInbox), StoreError> {
        let (campaigns, last_seq) = recover(&*store, configs, sources.clock.now_ms())?;
        let campaigns = Arc::new(RwLock::new(campaigns));
        let failed = Arc::new(AtomicBool::new(false));
        let disk = Arc::new(DiskWatch::default());
        let (tx, inbox) = writer_queue(options.learn_interval);
        let writer = Writer {
            store: store.clone(),
            clock: sources.clock.clone(),
            campaigns: campaigns.clone(),
            failed: failed.clone(),
            disk: disk.clone(),
            options,
            seq: last_seq,
            dirty: std::collections::HashSet::new(),
            last_checkpoint_ms: sources.clock.now_ms(),
        };
        let engine = Engine {
            campaigns,
            store,
            clock: sources.clock,
            rng: sources.rng,
            ids: IdGenerator::new(id_keys.signing_id()),
            numbering: parking_lot::Mutex::new(i64::MIN),
            id_keys,
            writer: tx,
            failed,
            disk,
            options,
            customer_key,
        };
        Ok((engine, writer, inbox))
    }
}

/// The campaigns as the file and the store say, their posteriors from the
/// checkpoints plus the learning events since (stored as one checkpoint
/// when replay changed them), and the last learning sequence number.
pub(super) fn recover(
    store: &dyn Storage,
    configs: Vec<FileCampaign>,
    now_ms: i64,
) -> Result<(Campaigns, u64), StoreError> {
    let mut campaigns: BTreeMap<String, Campaign> = BTreeMap::new();
    let mut revisions = WriteSet::default();
    let stored = store.load_configs()?;
    let models = store.load_models()?;
    // A campaign with models but no stored config was stored before
    // configs were, and so before step buckets: its numbers are one-hot
    // unless the file says otherwise.
    let configs = configs
        .into_iter()
        .map(|mut f| {
            let id = f.config.id.as_str();
            if !stored.iter().any(|(c, _)| c == id) && models.iter().any(|(c, _, _)| c == id) {
                crate::features::settle_stored_buckets(&mut f.config.features);
            }
            f
        })
        .collect();
    for r in crate::revisions::resolve(configs, stored, now_ms)? {
        if let Some(note) = &r.note {
            tracing::warn!(campaign = %r.config.id, "{note}");
        }
        if r.changed {
            revisions.put_config(
                &r.config.id,
                &StoredCampaign::new(&r.config, r.revision.clone(), r.retired.clone())?,
            );
        }
        if !r.served && !r.revision.retired {
            tracing::warn!(campaign = %r.config.id, "campaign in storage is no longer in the campaign file: kept for redemptions and reports, not served");
        }
        let mut campaign = Campaign::new(r.config, r.revision, r.served);
        let offer_encoder = campaign.config.offer_encoder();
        for o in &r.retired {
            campaign.push_offer(Offer {
                active: false,
                ..Offer::configured(o, offer_encoder.as_ref())
            });
        }
        campaign.retired = r.retired;
        campaigns.insert(campaign.config.id.clone(), campaign);
    }
    let cells = store.load_cells()?;
    for (key, counts) in &cells {
        let campaign = campaigns.entry(key.campaign.clone()).or_insert_with(|| {
            tracing::warn!(campaign = %key.campaign, "campaign in storage is not configured: kept for redemptions and stats, not served");
            Campaign::new(retired_config(&key.campaign), Revision::unknown(), false)
        });
        let idx = match campaign.offer_index(&key.offer) {
            Some(i) => i,
            None => {
                tracing::warn!(campaign = %key.campaign, offer = %key.offer, "offer in storage is not configured: kept as retired");
                campaign.add_retired_offer(&key.offer)
            }
        };
        campaign
            .model
            .working()
            .set_cell(&key.segment, idx, *counts);
    }
    for (campaign_id, prior) in store.load_priors()? {
        let Some(campaign) = campaigns.get_mut(&campaign_id) else {
            continue;
        };
        let offer_columns = campaign.config.offer_columns();
        let Some(c) = campaign.contextual.as_mut() else {
            continue;
        };
        if !prior.is_well_formed(c.encoder.dim(), offer_columns) {
            return Err(StoreError::Corrupt {
                key: format!("prior {campaign_id}"),
                reason: format!(
                    "stored prior has {} columns and {} offer effects, but the configured features encode to {} and {} offer columns",
                    prior.variance.len(),
                    prior.offer_effects.len(),
                    c.encoder.dim(),
                    offer_columns
                ),
            });
        }
        // Offers that learned nothing are set to it below.
        *c.prior.write() = prior;
    }
    for (campaign_id, offer, posterior) in models {
        let Some(campaign) = campaigns.get_mut(&campaign_id) else {
            tracing::warn!(campaign = %campaign_id, "stored model of an unknown campaign: ignored");
            continue;
        };
        let idx = match campaign.offer_index(&offer) {
            Some(i) => i,
            None => campaign.add_retired_offer(&offer),
        };
        match &mut campaign.contextual {
            Some(c) if posterior.mean.len() == c.encoder.dim() => {
                c.models.publish([(idx, posterior)], None);
            }
            Some(c) => {
                return Err(StoreError::Corrupt {
                    key: format!("model {campaign_id}/{offer}"),
                    reason: format!(
                        "stored model has {} dimensions but the configured features encode to {}; \
                         changing a contextual campaign's features needs a new campaign id",
                        posterior.mean.len(),
                        c.encoder.dim()
                    ),
                });
            }
            None => {
                tracing::warn!(campaign = %campaign_id, "stored regression model but the campaign is not contextual: ignored")
            }
        }
    }
    for (campaign_id, arm, sums) in store.load_clusters()? {
        let Some(campaign) = campaigns.get_mut(&campaign_id) else {
            continue;
        };
        match Arm::from_name(&arm) {
            Some(a) => campaign.clusters.write()[a.index()] = sums,
            None => {
                return Err(StoreError::Corrupt {
                    key: format!("g/{campaign_id}/{arm}"),
                    reason: "unknown arm".into(),
                });
            }
        }
    }
    for (campaign_id, arm, counts) in store.load_arms()? {
        let Some(campaign) = campaigns.get_mut(&campaign_id) else {
            continue;
        };
        match Arm::ALL.into_iter().find(|a| a.as_str() == arm) {
            Some(a) => campaign.arms.write()[a.index()] = counts,
            None => {
                return Err(StoreError::Corrupt {
                    key: format!("a/{campaign_id}/{arm}"),
                    reason: "unknown arm".into(),
                });
            }
        }
    }
    for (campaign_id, status) in store.load_statuses()? {
        if let Some(campaign) = campaigns.get_mut(&campaign_id) {
            *campaign.status.write() = status;
        }
    }
    for (campaign_id, offer, counts) in store.load_daily()? {
        let Some(campaign) = campaigns.get_mut(&campaign_id) else {
            continue;
        };
        if let Some(i) = campaign.offer_index(&offer)
            && let Some(slot) = campaign.daily.write().get_mut(i)
        {
            *slot = counts;
        }
    }
    for (campaign_id, profile) in store.load_traffic()? {
        if let Some(campaign) = campaigns.get_mut(&campaign_id) {
            *campaign.traffic.write() = profile;
        }
    }
    // The stored state as the config now says: a learned prior switched
    // off (by the campaign file, or by a revision whose second write a
    // crash interrupted) is undone, and offers that learned nothing are
    // the current prior.
    let mut settled = false;
    for campaign in campaigns.values() {
        let Some(c) = &campaign.contextual else {
            continue;
        };
        if !c.config.adaptive_prior && c.prior_is_learned() {
            c.switch_prior_off(&c.config, &campaign.offers);
            settled = true;
        }
        c.reset_untrained(&c.config, &campaign.offers);
    }
    let checkpoint = store.model_seq()?;
    let (decisions, last_seq) = replay_learning(store, &mut campaigns, checkpoint)?;
    // Delayed feedback's pending decisions and delays, weighed as of now.
    // Published once, with every count and pending decision recovered.
    for c in campaigns.values() {
        c.model.working().reweigh(now_ms);
        c.model.publish();
    }
    tracing::info!(
        cells = cells.len(),
        decisions,
        replayed = last_seq.saturating_sub(checkpoint),
        "store loaded"
    );
    // One batch: the revisions of this start and, when replay (or
    // settling) changed posteriors, a checkpoint of them. The writer
    // starts with nothing dirty, so without it a later checkpoint would
    // move the model sequence past posteriors it does not write.
    let mut writes = revisions;
    if last_seq > checkpoint || settled {
        for (id, c) in &campaigns {
            let Some(ctx) = &c.contextual else { continue };
            for (o, m) in c.offers.iter().zip(ctx.models.load().iter()) {
                writes.put_model(id, &o.id, m);
            }
            writes.put_prior(id, &ctx.prior.read());
        }
        writes.put_model_seq(last_seq);
    }
    if !writes.is_empty() {
        store.commit(writes)?;
        store.flush()?;
    }
    let campaigns: Campaigns = campaigns
        .into_iter()
        .map(|(id, c)| (id, Arc::new(c)))
        .collect();
    Ok((campaigns, last_seq))
}

pub(super) fn retired_config(id: &str) -> CampaignConfig {
    CampaignConfig {
        id: id.to_owned(),
        policy: PolicyKind::SegmentTs,
        segment_by: Vec::new(),
        reward_window: Duration::from_secs(1),
        objective: Objective::Redemptions,
        prior_strength: 0.0,
        max_segments: usize::MAX,
        snapshot_tolerance: 0.0,
        min_propensity: 0.0,
        control_share: 0.0,
        control_offer: None,
        control_rules: None,
        frequency_cap: None,
        time_zone: "UTC".into(),
        offers: Vec::new(),
        features: Vec::new(),
        hash_bits: 0,
        offer_features: Vec::new(),
        exploration: None,
        prior_variance: None,
        prior_rate: None,
        noise_variance: None,
        half_life: None,
        time_half_life_days: None,
        adaptive_prior: None,
        change_threshold: None,
    }
}

/// Delayed feedback ([`crate::policy::delay`]) as the writer left it: a
/// pending decision counted by its decision time (segment-ts), or waiting
/// for its non-redemption to be revealed (contextual: one not learned yet),
/// a redemption's delay (learned once its window has closed, at the next
/// reweighing or sweep).
fn recover_delays(c: &Campaign, id: &DecisionId, rec: &DecisionRecord) {
    let Some(offer) = c.offer_index(&rec.offer) else {
        return;
    };
    if let Some(ctx) = &c.contextual {
        let mut delays = ctx.delays.write();
        match rec.state {
            DecisionState::Pending if rec.learned_seq == 0 && rec.arm != Arm::NonPersonalized => {
                delays.add(*id, rec.created_ms);
            }
            DecisionState::Redeemed { at_ms, .. } => {
                delays.learner.redemption(rec.created_ms, at_ms);
            }
            _ => {}
        }
        return;
    }
    match rec.state {
        DecisionState::Pending => {
            c.model
                .working()
                .move_pending(&rec.segment, offer, rec.created_ms, 1);
        }
        DecisionState::Redeemed { at_ms, .. } => {
            c.model.working().redemption_delay(rec.created_ms, at_ms);
        }
        DecisionState::Expired => {}
    }
}

/// Reads every decision record (failing on an unreadable one) and re-applies
/// the learning events after the model checkpoint `checkpoint` to the
/// contextual posteriors, in their original order, so that the models are
/// exactly what they were when the process stopped. Returns the number of
/// decisions and the last sequence number seen.
pub(super) fn replay_learning(
    store: &dyn Storage,
    campaigns: &mut BTreeMap<String, Campaign>,
    checkpoint: u64,
) -> Result<(usize, u64), StoreError> {
    /// A learning event: (seq, campaign, offer, features, redemption?,
    /// the decision's timestamp, whether a redemption takes back the
    /// decision's non-redemption learned before it).
    type Event = (u64, String, String, Vec<(u32, f64)>, bool, i64, bool);
    let mut events: Vec<Event> = Vec::new();
    let mut n = 0usize;
    // Each contextual campaign's posteriors' version: its last event's
    // sequence number, as the writer published it.
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    store.scan_decisions(0, i64::MAX, &mut |id, rec| {
        n += 1;
        if let Some(c) = campaigns.get(&rec.campaign) {
            recover_delays(c, &id, &rec);
        }
        let last = rec.learned_seq.max(rec.redeemed_seq);
        if last > 0 {
            let v = versions.entry(rec.campaign.clone()).or_default();
            *v = (*v).max(last);
        }
        for (seq, redeemed) in [(rec.learned_seq, false), (rec.redeemed_seq, true)] {
            if seq > checkpoint {
                events.push((
                    seq,
                    rec.campaign.clone(),
                    rec.offer.clone(),
                    rec.features.clone(),
                    redeemed,
                    rec.created_ms,
                    redeemed && rec.learned_seq != 0,
                ));
            }
        }
        true
    })?;
    events.sort_by_key(|e| e.0);
    // Each contextual campaign's posteriors, worked on in place and then
    // published once with their version.
    let mut working: BTreeMap<String, Vec<GaussianPosterior>> = BTreeMap::new();
    let mut last = checkpoint;
    for (seq, campaign, offer, x, redeemed, at_ms, retract) in events {
        last = last.max(seq);
        let Some(c) = campaigns.get_mut(&campaign) else {
            continue;
        };
        let Some(i) = c.offer_index(&offer) else {
            continue;
        };
        let Some(ctx) = &c.contextual else {
            continue;
        };
        let offers = &c.offers;
        let step = crate::policy::learning::Step {
            encoder: &ctx.encoder,
            config: &ctx.config,
            offer_features: &|| offer_features(offers),
        };
        let mut prior = ctx.prior.write();
        let prior = ctx.config.adaptive_prior.then_some(&mut *prior);
        let models = working
            .entry(campaign)
            .or_insert_with(|| ctx.models.load().to_vec());
        if retract {
            step.retract_non_redemption(models, prior.as_deref(), i, &x, at_ms);
        }
        step.learn(models, prior, i, &x, redeemed, at_ms);
    }
    for (id, c) in campaigns.iter() {
        let Some(ctx) = &c.contextual else { continue };
        let version = versions.get(id).copied();
        match working.remove(id) {
            Some(models) => ctx.models.publish_all(models, version),
            None => ctx.models.publish([], version),
        }
    }
    Ok((n, last))
}
