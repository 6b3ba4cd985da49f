//! `CampaignAdmin`: campaign and offer changes, reports, erasure, backup
//! and export.

use tonic::{Request, Response, Status};

use super::{
    Api, MAX_CONFIG_BYTES,
    convert::{log_entry, report_to_proto, stats_to_proto},
    send_or_give_up, truncate,
};
use crate::{
    error::{Error, Reason},
    proto::{self, campaign_admin_server::CampaignAdmin, feature_value::Kind},
};

fn config_response(c: &crate::engine::Campaign) -> Result<proto::CampaignConfigResponse, Status> {
    if c.revision.number == 0 {
        return Err(Error::FailedPrecondition(format!(
            "campaign '{}' is in storage from before stored configs, with no config of its own; declare it in the campaign file",
            c.config.id
        ))
        .into());
    }
    let config_toml = c.config.to_toml().map_err(|e| {
        Status::from(Error::refused(
            Reason::Internal,
            format!("the config has no TOML form: {e}"),
        ))
    })?;
    Ok(proto::CampaignConfigResponse {
        campaign: c.config.id.clone(),
        config_toml,
        revision: c.revision.number,
        source: c.revision.source.as_str().to_owned(),
        updated_at_unix_ms: c.revision.updated_ms,
        served: c.active,
    })
}

impl Api {
    /// The customer id of ForgetCustomer and AccessCustomer: required, and
    /// at most `--max-key` bytes.
    fn check_customer_id(&self, id: &str) -> Result<(), Error> {
        if id.is_empty() {
            return Err(Error::InvalidArgument(
                "customer_id is required: the id passed to SelectOffer".into(),
            ));
        }
        if id.len() > self.limits.max_key {
            return Err(Error::InvalidArgument(format!(
                "customer_id is at most {} bytes",
                self.limits.max_key
            )));
        }
        Ok(())
    }
}

/// Bytes per BackupChunk.
const BACKUP_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl CampaignAdmin for Api {
    type ExportDecisionsStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::DecisionLogEntry, Status>>;
    type BackupStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::BackupChunk, Status>> + Send>,
    >;

    async fn set_offer_status(
        &self,
        request: Request<proto::SetOfferStatusRequest>,
    ) -> Result<Response<proto::SetStatusResponse>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() || r.offer_id.is_empty() {
            return Err(Error::InvalidArgument("campaign and offer_id are required".into()).into());
        }
        let status = crate::engine::OfferStatus::parse(&r.status).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "status '{}' is not one of active, paused, retired",
                truncate(&r.status)
            ))
        })?;
        self.engine
            .set_offer_status(&r.campaign, &r.offer_id, status)
            .await?;
        tracing::info!(campaign = %r.campaign, offer = %r.offer_id, status = status.as_str(), "offer status set");
        Ok(Response::new(proto::SetStatusResponse {}))
    }

    async fn set_campaign_status(
        &self,
        request: Request<proto::SetCampaignStatusRequest>,
    ) -> Result<Response<proto::SetStatusResponse>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        match r.status.as_str() {
            "active" => self.engine.set_campaign_paused(&r.campaign, false).await?,
            "paused" => self.engine.set_campaign_paused(&r.campaign, true).await?,
            "retired" => {
                self.engine
                    .revise(&r.campaign, crate::engine::ConfigChange::Retire, None)
                    .await?;
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "status '{}' is not one of active, paused, retired",
                    truncate(other)
                ))
                .into());
            }
        }
        tracing::info!(campaign = %r.campaign, status = %r.status, "campaign status set");
        Ok(Response::new(proto::SetStatusResponse {}))
    }

    async fn get_campaign_config(
        &self,
        request: Request<proto::GetCampaignConfigRequest>,
    ) -> Result<Response<proto::CampaignConfigResponse>, Status> {
        let campaign = request.into_inner().campaign;
        if campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        let c = self.engine.campaign(&campaign)?;
        Ok(Response::new(config_response(&c)?))
    }

    async fn put_campaign(
        &self,
        request: Request<proto::PutCampaignRequest>,
    ) -> Result<Response<proto::CampaignConfigResponse>, Status> {
        let r = request.into_inner();
        if r.config_toml.len() > MAX_CONFIG_BYTES {
            return Err(Error::InvalidArgument(format!(
                "config_toml is {} bytes; at most {MAX_CONFIG_BYTES} are accepted",
                r.config_toml.len()
            ))
            .into());
        }
        let config = crate::config::parse_campaign(&r.config_toml, "config_toml")
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let id = config.id.clone();
        let c = self
            .engine
            .revise(
                &id,
                crate::engine::ConfigChange::Put(Box::new(config)),
                r.expected_revision,
            )
            .await?;
        tracing::info!(campaign = %id, revision = c.revision.number, "campaign config put");
        Ok(Response::new(config_response(&c)?))
    }

    async fn add_offer(
        &self,
        request: Request<proto::AddOfferRequest>,
    ) -> Result<Response<proto::CampaignConfigResponse>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() || r.offer_id.is_empty() {
            return Err(Error::InvalidArgument("campaign and offer_id are required".into()).into());
        }
        let mut features = std::collections::BTreeMap::new();
        for (name, value) in r.features {
            let v = match value.kind {
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "offer feature '{}' has no value: set number, category or flag",
                        truncate(&name)
                    ))
                    .into());
                }
                // Validated with the config, non-finite numbers included.
                Some(Kind::Number(x)) => crate::config::OfferFeatureValue::Number(x),
                Some(Kind::Category(c)) => crate::config::OfferFeatureValue::Category(c),
                Some(Kind::Flag(b)) => crate::config::OfferFeatureValue::Flag(b),
            };
            features.insert(name, v);
        }
        let offer = crate::config::OfferConfig {
            features,
            display: r.display.into_iter().collect(),
            id: r.offer_id.clone(),
            name: r.name,
            value: r.value.unwrap_or(1.0),
            category: r.category,
            max_decisions: r.max_decisions,
            max_redemptions: r.max_redemptions,
            max_decisions_per_day: r.max_decisions_per_day,
            max_redemptions_per_day: r.max_redemptions_per_day,
            max_value: r.max_value,
        };
        let c = self
            .engine
            .revise(
                &r.campaign,
                crate::engine::ConfigChange::AddOffer(Box::new(offer)),
                r.expected_revision,
            )
            .await?;
        tracing::info!(campaign = %r.campaign, offer = %truncate(&r.offer_id), revision = c.revision.number, "offer added");
        Ok(Response::new(config_response(&c)?))
    }

    async fn get_campaign_report(
        &self,
        request: Request<proto::GetCampaignReportRequest>,
    ) -> Result<Response<proto::CampaignReport>, Status> {
        let campaign = request.into_inner().campaign;
        if campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        self.engine.settled().await?;
        Ok(Response::new(report_to_proto(
            self.engine.report(&campaign)?,
        )))
    }

    async fn forget_customer(
        &self,
        request: Request<proto::ForgetCustomerRequest>,
    ) -> Result<Response<proto::ForgetCustomerResponse>, Status> {
        let id = request.into_inner().customer_id;
        self.check_customer_id(&id)?;
        let f = self.engine.forget(&id).await?;
        tracing::info!(decisions = f.decisions, exact = f.exact, "customer erased");
        Ok(Response::new(proto::ForgetCustomerResponse {
            decisions_erased: f.decisions,
            model_updates: f.model_updates,
            posteriors_exact: f.exact,
        }))
    }

    async fn access_customer(
        &self,
        request: Request<proto::AccessCustomerRequest>,
    ) -> Result<Response<proto::AccessCustomerResponse>, Status> {
        let id = request.into_inner().customer_id;
        self.check_customer_id(&id)?;
        self.engine.settled().await?;
        let engine = self.engine.clone();
        let (hash, records) = tokio::task::spawn_blocking(move || engine.customer_records(&id))
            .await
            .map_err(|e| Error::refused(Reason::Internal, format!("access: {e}")))??;
        tracing::info!(decisions = records.len(), "customer data accessed");
        Ok(Response::new(proto::AccessCustomerResponse {
            customer_hash: hash.0.iter().map(|b| format!("{b:02x}")).collect(),
            decisions: records
                .into_iter()
                .map(|(id, rec)| log_entry(self.engine.id_keys().encode(&id), rec))
                .collect(),
        }))
    }

    async fn backup(
        &self,
        _request: Request<proto::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let Ok(running) = self.backups.clone().try_acquire_owned() else {
            return Err(Error::refused(
                Reason::BackupRunning,
                "a backup is already being taken or streamed; retry when it is done",
            )
            .into());
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix("offer-bandit-backup-");
        let file = match &self.scratch {
            Some(dir) => std::fs::create_dir_all(dir).and_then(|()| builder.tempfile_in(dir)),
            None => builder.tempfile(),
        }
        .map_err(|e| Error::Unavailable(format!("cannot create the backup's scratch file: {e}")))?;
        let entries = self.engine.backup(file.path().to_path_buf()).await?;
        tracing::info!(entries, "backup taken");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let reopened = file.reopen();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut reader = match reopened {
                Ok(r) => r,
                Err(e) => {
                    let _ = send_or_give_up(
                        &tx,
                        Err(Error::Unavailable(format!("reading the backup: {e}")).into()),
                        "backup",
                    );
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; BACKUP_CHUNK];
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if !send_or_give_up(&tx, Ok(proto::BackupChunk { data: buf }), "backup") {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = send_or_give_up(
                            &tx,
                            Err(Error::Unavailable(format!("reading the backup: {e}")).into()),
                            "backup",
                        );
                        break;
                    }
                }
            }
        });
        // The scratch file and the one-backup permit live as long as the
        // reply stream: until the reader has it all, goes away or stalls.
        let held = (file, running);
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            move |chunk| {
                let _ = &held;
                chunk
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn export_decisions(
        &self,
        request: Request<proto::ExportDecisionsRequest>,
    ) -> Result<Response<Self::ExportDecisionsStream>, Status> {
        let r = request.into_inner();
        if r.campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        if r.since_unix_ms < 0 || r.until_unix_ms < 0 {
            return Err(Error::InvalidArgument(
                "since_unix_ms and until_unix_ms must be >= 0".into(),
            )
            .into());
        }
        let until = if r.until_unix_ms == 0 {
            i64::MAX
        } else {
            r.until_unix_ms
        };
        if until <= r.since_unix_ms {
            return Err(
                Error::InvalidArgument("until_unix_ms must be after since_unix_ms".into()).into(),
            );
        }
        // Unknown campaigns fail before the stream starts.
        self.engine.stats(&r.campaign)?;
        self.engine.settled().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let failed = tx.clone();
            let result = engine.export(&r.campaign, r.since_unix_ms, until, |id, rec| {
                send_or_give_up(
                    &tx,
                    Ok(log_entry(engine.id_keys().encode(&id), rec)),
                    "export",
                )
            });
            if let Err(e) = result {
                let _ = send_or_give_up(&failed, Err(e.into()), "export");
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn list_campaigns(
        &self,
        _request: Request<proto::ListCampaignsRequest>,
    ) -> Result<Response<proto::ListCampaignsResponse>, Status> {
        let campaigns = self
            .engine
            .campaigns()
            .into_iter()
            .filter(|c| c.active)
            .map(|c| proto::Campaign {
                id: c.config.id.clone(),
                policy: c.config.policy.as_str().to_owned(),
                segment_by: c.config.segment_by.clone(),
                reward_window_seconds: c.config.reward_window.as_secs(),
                objective: c.config.objective.as_str().to_owned(),
                offers: c
                    .offers
                    .iter()
                    .filter(|o| o.active)
                    .map(|o| proto::Offer {
                        id: o.id.clone(),
                        name: o.name.clone(),
                        display: c
                            .config
                            .offers
                            .iter()
                            .find(|x| x.id == o.id)
                            .map(|x| x.display.clone().into_iter().collect())
                            .unwrap_or_default(),
                        value: o.value,
                        category: o.category.clone(),
                        status: c.offer_status(&o.id).as_str().to_owned(),
                    })
                    .collect(),
                status: if c.paused() { "paused" } else { "active" }.to_owned(),
                revision: c.revision.number,
            })
            .collect();
        Ok(Response::new(proto::ListCampaignsResponse { campaigns }))
    }

    async fn get_campaign_stats(
        &self,
        request: Request<proto::GetCampaignStatsRequest>,
    ) -> Result<Response<proto::GetCampaignStatsResponse>, Status> {
        let campaign = request.into_inner().campaign;
        if campaign.is_empty() {
            return Err(Error::InvalidArgument("campaign is required".into()).into());
        }
        self.engine.settled().await?;
        Ok(Response::new(stats_to_proto(self.engine.stats(&campaign)?)))
    }
}
